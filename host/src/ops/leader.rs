//! Leader election: of several replicas of the host, only the holder of a
//! coordination.k8s.io Lease runs plugins; the others stand by and take over once the
//! lease is released or expires. The lease itself is kube-lease-manager's.
//!
//! kube-lease-manager has a standby sleep until the term it last saw runs out, so a
//! leader that gives its lease up on a graceful stop would leave it unheld for up to a
//! lease duration. A standby therefore also reads the Lease every retry period, as
//! client-go's standbys do, and campaigns at once when the holder it saw has let go.
//!
//! A leader that cannot renew its lease, or finds it held by another, has lost it for
//! good: [`Leadership::lost`] resolves and the host stops reconciling, as
//! controller-runtime's managers do, rather than risk two replicas writing at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Lease name used when none is configured.
pub const DEFAULT_LEASE_NAME: &str = "kubewasm";

/// How a replica campaigns for the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionOptions {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's `holderIdentity`: unique among the replicas.
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal; a standby replica takes over
    /// this long after the leader stopped renewing.
    pub lease_seconds: u64,
    /// Seconds after a renewal at which the leader renews again; less than
    /// `lease_seconds`, the difference being the leader's margin for a slow API server.
    pub renew_seconds: u64,
    /// How often a standby replica reads the Lease to see whether it was released, and
    /// waits before trying again after an API error.
    pub retry_period: Duration,
}

impl LeaderElectionOptions {
    /// Options with the default timing (a 15 s lease renewed every 10 s, retries every
    /// 2 s), a lease named [`DEFAULT_LEASE_NAME`] and a fresh [`default_identity`].
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            identity: default_identity(),
            lease_seconds: 15,
            renew_seconds: 10,
            retry_period: Duration::from_secs(2),
        }
    }

    fn validate(&self) -> Result<(), LeaderError> {
        if self.renew_seconds == 0 || self.renew_seconds >= self.lease_seconds {
            return Err(LeaderError::Timing {
                lease_seconds: self.lease_seconds,
                renew_seconds: self.renew_seconds,
            });
        }
        Ok(())
    }
}

/// The pod's name (`POD_NAME`, else `HOSTNAME`, else the kernel's host name) and a
/// random suffix, so that a restarted replica never mistakes the lease of its previous
/// run for its own.
pub fn default_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| "kubewasm".to_string());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// Why leader election could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timing options contradict each other.
    #[error(
        "the lease is renewed every {renew_seconds} s but lasts {lease_seconds} s: renewals must come sooner than the lease runs out, and at least a second apart"
    )]
    Timing {
        /// Lease validity.
        lease_seconds: u64,
        /// Renewal period.
        renew_seconds: u64,
    },
    /// No client could be built for the lease.
    #[error("a client for the leader lease: {0}")]
    Client(#[source] kube::Error),
    /// The campaign stopped (the host is shutting down) before the lease was won.
    #[error("leader election stopped before the lease was acquired")]
    Stopped,
}

/// Where this replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the lease.
    Standby,
    /// Holding the lease.
    Leading,
    /// Held the lease and lost it; never leads again in this process.
    Lost,
}

/// A running campaign for the lease; dropping it stops campaigning.
#[derive(Debug)]
pub struct Leadership {
    identity: String,
    role: watch::Receiver<Role>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Leadership {
    /// Starts campaigning for the lease (creating the Lease when it does not exist)
    /// as the client `config` describes; `leader` reads 1 while this replica holds it.
    /// API errors, an unreachable API server among them, are logged and retried.
    pub fn campaign(
        mut config: kube::Config,
        options: LeaderElectionOptions,
        leader: Gauge,
    ) -> Result<Self, LeaderError> {
        options.validate()?;
        // A renewal that hangs must fail before the lease runs out, for the leader to
        // step down before a standby may take over.
        let margin = Some(Duration::from_secs(
            options.lease_seconds - options.renew_seconds,
        ));
        (
            config.connect_timeout,
            config.read_timeout,
            config.write_timeout,
        ) = (margin, margin, margin);
        let client = kube::Client::try_from(config).map_err(LeaderError::Client)?;
        tracing::info!(
            lease = %format!("{}/{}", options.namespace, options.lease_name),
            identity = %options.identity,
            "campaigning for the leader lease"
        );
        let (role_tx, role) = watch::channel(Role::Standby);
        let stop = CancellationToken::new();
        let identity = options.identity.clone();
        let task = tokio::spawn(run(client, options, role_tx, stop.clone(), leader));
        Ok(Self {
            identity,
            role,
            stop,
            task: Some(task),
        })
    }

    /// Where this replica stands, as it changes.
    pub fn role_watch(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Where this replica stands now.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Waits until this replica holds the lease.
    pub async fn acquired(&self) -> Result<(), LeaderError> {
        let mut role = self.role.clone();
        match role.wait_for(|role| *role != Role::Standby).await {
            Ok(role) if *role == Role::Leading => Ok(()),
            _ => Err(LeaderError::Stopped),
        }
    }

    /// Resolves once this replica has held the lease and lost it.
    pub async fn lost(&self) {
        let mut role = self.role.clone();
        // A closed channel means the campaign ended, which it does only when stopped or
        // lost: either way this replica no longer leads.
        let _ = role.wait_for(|role| *role == Role::Lost).await;
    }

    /// Stops campaigning and gives the lease up if this replica holds it, so that no
    /// standby has to wait for it to expire.
    pub async fn release(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
            && err.is_panic()
        {
            tracing::error!("the leader election task panicked: {err}");
        }
    }
}

/// Builds the lease manager, retrying API errors until it succeeds or `stop`.
async fn lease_manager(
    client: kube::Client,
    options: &LeaderElectionOptions,
    stop: &CancellationToken,
) -> Option<LeaseManager> {
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &options.lease_name)
            .with_namespace(&options.namespace)
            .with_identity(&options.identity)
            .with_field_manager(format!("kubewasm-{}", options.identity))
            .with_duration(options.lease_seconds)
            .with_grace(options.lease_seconds - options.renew_seconds)
            .build();
        let err = tokio::select! {
            () = stop.cancelled() => return None,
            built = built => match built {
                Ok(lease) => return Some(lease),
                Err(err) => err,
            },
        };
        tracing::warn!(
            "reading or creating the leader lease {}/{}: {err}; retrying in {:?}",
            options.namespace,
            options.lease_name,
            options.retry_period
        );
        tokio::select! {
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(options.retry_period) => {}
        }
    }
}

async fn run(
    client: kube::Client,
    options: LeaderElectionOptions,
    role: watch::Sender<Role>,
    stop: CancellationToken,
    leader: Gauge,
) {
    let Some(mut lease) = lease_manager(client.clone(), &options, &stop).await else {
        return;
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
    let retry_period = options.retry_period;
    loop {
        let leading = *role.borrow() == Role::Leading;
        let changed = tokio::select! {
            () = stop.cancelled() => break,
            changed = lease.changed() => changed,
            () = given_up(&leases, &options), if !leading => {
                tracing::info!("the leader lease was released: campaigning for it now");
                // A new manager reads the Lease afresh, where the old one would sleep
                // until the released term ran out.
                match lease_manager(client.clone(), &options, &stop).await {
                    Some(fresh) => lease = fresh,
                    None => break,
                }
                continue;
            }
        };
        match changed {
            Ok(true) => {
                tracing::info!("acquired the leader lease: running plugins");
                role.send_replace(Role::Leading);
                leader.set(1);
            }
            Ok(false) if leading => {
                tracing::error!("the leader lease is held by another replica now");
                step_down(&role, &leader);
                break;
            }
            Ok(false) => {}
            Err(err) if leading => {
                tracing::error!("renewing the leader lease failed: {err}");
                step_down(&role, &leader);
                break;
            }
            Err(err) => {
                tracing::warn!(
                    "campaigning for the leader lease: {err}; retrying in {retry_period:?}"
                );
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(retry_period) => {}
                }
            }
        }
    }
    // Held until the host has stopped reconciling, so that no standby starts while
    // this replica's last reconciles are still running.
    stop.cancelled().await;
    leader.set(0);
    // A replica that lost the lease leaves it alone: it may be another's by now.
    if *role.borrow() == Role::Leading {
        match lease.release().await {
            Ok(()) => tracing::info!("released the leader lease"),
            Err(err) => tracing::warn!(
                "releasing the leader lease: {err}; the next leader waits for it to expire"
            ),
        }
    }
}

/// Reads the Lease every retry period and resolves once a holder other than this
/// replica, seen holding it, has given it up.
async fn given_up(leases: &Api<Lease>, options: &LeaderElectionOptions) {
    let mut held_by: Option<String> = None;
    loop {
        tokio::time::sleep(options.retry_period).await;
        let holder = match leases.get_opt(&options.lease_name).await {
            Ok(lease) => lease
                .and_then(|lease| lease.spec)
                .and_then(|spec| spec.holder_identity)
                .filter(|holder| !holder.is_empty()),
            Err(err) => {
                tracing::debug!("reading the leader lease while standing by: {err}");
                continue;
            }
        };
        match holder {
            Some(holder) if holder != options.identity => {
                if held_by.as_ref() != Some(&holder) {
                    tracing::info!(
                        lease = %format!("{}/{}", options.namespace, options.lease_name),
                        %holder,
                        "standing by while another replica holds the leader lease"
                    );
                }
                held_by = Some(holder);
            }
            Some(_) => held_by = None,
            None if held_by.is_some() => return,
            None => {}
        }
    }
}

fn step_down(role: &watch::Sender<Role>, leader: &Gauge) {
    role.send_replace(Role::Lost);
    leader.set(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_must_come_before_the_lease_runs_out() {
        let mut options = LeaderElectionOptions::new("kubewasm-system");
        assert_eq!(options.validate().ok(), Some(()));
        for (lease_seconds, renew_seconds) in [(15, 15), (15, 20), (15, 0)] {
            options.lease_seconds = lease_seconds;
            options.renew_seconds = renew_seconds;
            let err = options.validate().expect_err("contradictory timing");
            assert!(
                err.to_string()
                    .contains(&format!("renewed every {renew_seconds} s")),
                "{err}"
            );
        }
    }

    #[test]
    fn identities_differ_between_runs_of_one_pod() {
        let (first, second) = (default_identity(), default_identity());
        assert_ne!(first, second);
        let (host, suffix) = first.rsplit_once('_').expect("host_suffix");
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 8, "{first}");
    }
}
