//! Leader election between two hosts on one plugins directory, on a real API server:
//! only the holder of the Lease reconciles, a standby compiles the plugins while it
//! waits and takes over when the leader stops (at once when it releases the Lease), a
//! leader that loses its lease to another or cannot renew it stops, and a campaign
//! outlasts an API server it cannot reach.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kubewasm::manager::{Manager, ManagerOptions};
use kubewasm::ops::leader::{LeaderElectionOptions, Leadership, Role};
use kubewasm::sandbox::{CacheOutcome, SandboxConfig};
use kubewasm_tests::host::{PluginFiles, metric_value, write_plugin};
use kubewasm_tests::plugins::{example_bytes, example_grant_in};
use kubewasm_tests::proxy::CuttableProxy;
use kubewasm_tests::{admin_client, admin_config, logs, sandbox_config, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(60);
const LEASE: &str = "kubewasm";

/// A plugins directory holding the mirror plugin, granted `namespace`.
fn mirror_dir(namespace: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    write_plugin(
        dir.path(),
        &PluginFiles::new(
            "mirror",
            example_bytes("configmap-mirror"),
            example_grant_in("configmap-mirror", namespace),
        ),
    )?;
    Ok(dir)
}

/// Starts a host on `dir` that campaigns as `identity` for the Lease in `namespace`,
/// with a short lease so that takeovers come quickly. Resolves once it leads.
async fn electing_host(dir: &Path, namespace: &str, identity: &str) -> anyhow::Result<Manager> {
    electing_host_with_lease(dir, namespace, identity, 3).await
}

/// [`electing_host`] with a lease of `lease_seconds`, renewed two thirds into it.
async fn electing_host_with_lease(
    dir: &Path,
    namespace: &str,
    identity: &str,
    lease_seconds: u64,
) -> anyhow::Result<Manager> {
    electing_host_on(
        admin_config().await?,
        sandbox_config(),
        dir,
        namespace,
        identity,
        lease_seconds,
    )
    .await
}

/// [`electing_host_with_lease`] on the API server `config` names, with `sandbox`.
async fn electing_host_on(
    config: kube::Config,
    sandbox: SandboxConfig,
    dir: &Path,
    namespace: &str,
    identity: &str,
    lease_seconds: u64,
) -> anyhow::Result<Manager> {
    let mut election = LeaderElectionOptions::new(namespace);
    election.identity = identity.to_string();
    election.lease_seconds = lease_seconds;
    election.renew_seconds = lease_seconds * 2 / 3;
    election.retry_period = Duration::from_millis(200);
    let options = ManagerOptions {
        plugins_dir: dir.to_path_buf(),
        plugin_files: Default::default(),
        sandbox,
        runtime: kubewasm_tests::runtime_options(),
        metrics_addr: None,
        probe_addr: None,
        reload: None,
        leader_election: Some(election),
        host_pod: None,
    };
    Manager::start(config, options).await
}

async fn holder(client: &Client, namespace: &str) -> anyhow::Result<Option<String>> {
    let lease = Api::<Lease>::namespaced(client.clone(), namespace)
        .get(LEASE)
        .await?;
    Ok(lease.spec.and_then(|spec| spec.holder_identity))
}

fn leader_gauge(manager: &Manager) -> f64 {
    metric_value(&manager.metrics().encode(), "kubewasm_leader", "")
}

/// Creates labelled ConfigMap `name` and waits until its mirror exists.
async fn mirrored(api: &Api<ConfigMap>, name: &str) -> anyhow::Result<()> {
    let source = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                "kubewasm.dev/mirror".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("value".to_string(), name.to_string())])),
        ..Default::default()
    };
    api.create(&PostParams::default(), &source).await?;
    let mirror = format!("{name}-mirror");
    wait::until(&format!("{mirror} to exist"), WAIT, || async {
        Ok(api.get_opt(&mirror).await?.map(|_| ()))
    })
    .await
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over_when_it_stops()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "leader").await?;
    let dir = mirror_dir(&namespace)?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

    let first = electing_host(dir.path(), &namespace, "first").await?;
    assert_eq!(holder(&client, &namespace).await?.as_deref(), Some("first"));
    assert_eq!(first.leader_identity(), Some("first"));
    assert_eq!(leader_gauge(&first), 1.0);
    mirrored(&api, "before").await?;

    let standby = {
        let (dir, namespace) = (dir.path().to_path_buf(), namespace.clone());
        tokio::spawn(async move { electing_host(&dir, &namespace, "second").await })
    };
    // The standby has the same plugin and sees the same objects; while the leader works
    // on, the lease stays the leader's and the standby does not start.
    mirrored(&api, "while-standing-by").await?;
    assert!(
        !standby.is_finished(),
        "the standby started while the leader held the lease"
    );
    assert_eq!(holder(&client, &namespace).await?.as_deref(), Some("first"));

    // A graceful stop releases the lease: the standby takes over and reconciles.
    first.shutdown().await;
    let second = tokio::time::timeout(WAIT, standby).await???;
    assert_eq!(
        holder(&client, &namespace).await?.as_deref(),
        Some("second")
    );
    assert_eq!(leader_gauge(&second), 1.0);
    mirrored(&api, "after").await?;
    second.shutdown().await;
    assert_eq!(
        holder(&client, &namespace).await?,
        None,
        "the lease was not released"
    );
    Ok(())
}

#[tokio::test]
async fn a_standby_compiles_while_waiting_and_takes_over_a_released_lease_at_once()
-> anyhow::Result<()> {
    kubewasm_tests::init_tracing();
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "leader-released").await?;
    let dir = mirror_dir(&namespace)?;
    // A term far longer than the test may wait: only a takeover on release passes.
    const LONG_LEASE: u64 = 600;
    let first = electing_host_with_lease(dir.path(), &namespace, "first", LONG_LEASE).await?;
    // The standby has a compile cache of its own, which nothing else fills.
    let cache = tempfile::tempdir()?;
    let standby = {
        let (dir, namespace) = (dir.path().to_path_buf(), namespace.clone());
        let sandbox = SandboxConfig {
            cache_dir: Some(cache.path().join("compiled")),
            ..sandbox_config()
        };
        tokio::spawn(async move {
            let config = admin_config().await?;
            electing_host_on(config, sandbox, &dir, &namespace, "second", LONG_LEASE).await
        })
    };
    let lease = format!("{namespace}/{LEASE}");
    wait::until("the standby to see the leader", WAIT, || async {
        let seen = logs::matching(&["standing by while another", &lease, "holder=first"]);
        Ok((!seen.is_empty()).then_some(()))
    })
    .await?;
    wait::until("the standby to compile the plugin", WAIT, || async {
        let artifacts = std::fs::read_dir(cache.path().join("compiled"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
                    .count()
            })
            .unwrap_or(0);
        Ok((artifacts > 0).then_some(()))
    })
    .await?;

    first.shutdown().await;
    let second = tokio::time::timeout(WAIT, standby)
        .await
        .map_err(|_| anyhow::anyhow!("the standby waited for the released term to end"))???;
    assert_eq!(
        holder(&client, &namespace).await?.as_deref(),
        Some("second")
    );
    let loaded = second.plugins().loaded();
    assert_eq!(
        loaded.get("mirror").map(|plugin| plugin.cache),
        Some(CacheOutcome::Hit),
        "taking over compiled the plugin again"
    );
    second.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_to_another_stands_down() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "leader-lost").await?;
    let dir = mirror_dir(&namespace)?;
    let leader = electing_host(dir.path(), &namespace, "leader").await?;
    assert_eq!(leader_gauge(&leader), 1.0);

    // Another takes the lease, as one would after this replica failed to renew it.
    let taken = serde_json::json!({
        "spec": {
            "holderIdentity": "intruder",
            "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now()),
            "leaseDurationSeconds": 600,
        }
    });
    Api::<Lease>::namespaced(client.clone(), &namespace)
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&taken))
        .await?;
    tokio::time::timeout(WAIT, leader.leadership_lost())
        .await
        .map_err(|_| anyhow::anyhow!("the leader did not notice it lost the lease"))?;
    assert_eq!(leader_gauge(&leader), 0.0);
    leader.shutdown().await;
    assert_eq!(
        holder(&client, &namespace).await?.as_deref(),
        Some("intruder"),
        "stepping down released a lease held by another"
    );
    Ok(())
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stands_down_and_a_standby_takes_over()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "leader-cut").await?;
    let dir = mirror_dir(&namespace)?;
    let mut config = admin_config().await?;
    let api_server = format!(
        "{}:{}",
        config.cluster_url.host().unwrap_or("127.0.0.1"),
        config.cluster_url.port_u16().unwrap_or(443)
    );
    let proxy = CuttableProxy::start(api_server.parse()?).await?;
    config.cluster_url = format!("https://{}", proxy.addr()).parse()?;
    let leader = electing_host_on(
        config,
        sandbox_config(),
        dir.path(),
        &namespace,
        "cut-off",
        3,
    )
    .await?;
    assert_eq!(leader_gauge(&leader), 1.0);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    mirrored(&api, "before-the-cut").await?;
    let standby = {
        let (dir, namespace) = (dir.path().to_path_buf(), namespace.clone());
        tokio::spawn(async move { electing_host(&dir, &namespace, "standby").await })
    };

    // Its renewals now fail: it must stop before its lease runs out and another leads.
    proxy.cut();
    tokio::time::timeout(WAIT, leader.leadership_lost())
        .await
        .map_err(|_| anyhow::anyhow!("the leader did not notice it could not renew"))?;
    assert_eq!(leader_gauge(&leader), 0.0);
    let standby = tokio::time::timeout(WAIT, standby).await???;
    assert_eq!(
        holder(&client, &namespace).await?.as_deref(),
        Some("standby")
    );
    mirrored(&api, "after-the-cut").await?;
    leader.shutdown().await;
    standby.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_api_server_is_retried_while_standing_by() -> anyhow::Result<()> {
    kubewasm_tests::init_tracing();
    // Nothing listens on the port the config names.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = admin_config().await?;
    config.cluster_url = format!("https://127.0.0.1:{port}").parse()?;
    let mut election = LeaderElectionOptions::new("default");
    election.lease_name = "unreachable".into();
    election.retry_period = Duration::from_millis(100);
    let metrics = kubewasm::ops::metrics::Metrics::new();
    let leadership = Leadership::campaign(config, election, metrics.leader.clone())?;
    wait::until("the campaign to retry", WAIT, || async {
        let retries = logs::matching(&["reading or creating the leader lease default/unreachable"]);
        Ok((retries.len() >= 2).then_some(()))
    })
    .await?;
    assert_eq!(leadership.role(), Role::Standby);
    assert_eq!(metrics.leader.get(), 0);
    Ok(())
}
