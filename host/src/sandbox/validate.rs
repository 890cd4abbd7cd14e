//! What a guest returns is checked before the host acts on it.

use std::time::Duration;

use super::LoadError;
use super::bindings::kubewasm::controller::types as wit;
use crate::reconciler::{
    Action, Description, EventType, HostCalls, HostError, KindRef, MAX_REQUEUE, MIN_REQUEUE,
    ObjectRef, ReconcileError, WatchSpec,
};

/// Longest error message kept from a guest (it becomes an Event note).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Checks and converts what `describe()` returned.
pub fn description(description: wit::Description) -> Result<Description, LoadError> {
    let invalid = LoadError::InvalidDescription;
    let watch = description.watch;
    crate::names::check_api_version(&watch.api_version).map_err(invalid)?;
    crate::names::check_kind(&watch.kind).map_err(invalid)?;
    if let Some(selector) = &watch.label_selector {
        crate::selector::parse(selector).map_err(|err| invalid(err.to_string()))?;
    }
    if let Some(finalizer) = &description.finalizer {
        crate::names::check_finalizer(finalizer).map_err(invalid)?;
    }
    let mut owns = Vec::new();
    for owned in description.owns {
        crate::names::check_api_version(&owned.api_version).map_err(invalid)?;
        crate::names::check_kind(&owned.kind).map_err(invalid)?;
        owns.push(KindRef {
            api_version: owned.api_version,
            kind: owned.kind,
        });
    }
    Ok(Description {
        watch: WatchSpec {
            api_version: watch.api_version,
            kind: watch.kind,
            label_selector: watch.label_selector,
        },
        finalizer: description.finalizer,
        owns,
    })
}

/// Checks and converts what `apply` or `cleanup` returned.
pub fn reconcile_result(
    result: Result<wit::Action, wit::ReconcileError>,
) -> Result<Action, ReconcileError> {
    match result {
        Ok(wit::Action::RequeueAfter(ms)) => Ok(Action::RequeueAfter(delay(ms, "requeue-after")?)),
        Ok(wit::Action::AwaitChange) => Ok(Action::AwaitChange),
        Ok(wit::Action::Default) => Ok(Action::Default),
        Err(err) => Err(ReconcileError::Reported {
            message: super::guest_log::truncate(err.message.trim(), MAX_MESSAGE_BYTES).to_string(),
            retry_after: err
                .retry_after_ms
                .map(|ms| delay(ms, "retry-after-ms"))
                .transpose()?,
        }),
    }
}

fn delay(ms: u64, field: &str) -> Result<Duration, ReconcileError> {
    let delay = Duration::from_millis(ms);
    if (MIN_REQUEUE..=MAX_REQUEUE).contains(&delay) {
        Ok(delay)
    } else {
        Err(ReconcileError::InvalidResult(format!(
            "{field} of {ms} ms is outside {} ms to {} ms",
            MIN_REQUEUE.as_millis(),
            MAX_REQUEUE.as_millis()
        )))
    }
}

/// The imports `describe()` gets: no Kubernetes access at all.
pub struct NoKubernetes;

const NO_ACCESS: &str = "describe() has no Kubernetes access";

#[async_trait::async_trait]
impl HostCalls for NoKubernetes {
    async fn get(&self, _: ObjectRef) -> Result<String, HostError> {
        Err(HostError::Forbidden(NO_ACCESS.into()))
    }
    async fn list(
        &self,
        _: String,
        _: String,
        _: Option<String>,
        _: Option<String>,
    ) -> Result<String, HostError> {
        Err(HostError::Forbidden(NO_ACCESS.into()))
    }
    async fn apply(&self, _: String) -> Result<String, HostError> {
        Err(HostError::Forbidden(NO_ACCESS.into()))
    }
    async fn patch_status(&self, _: ObjectRef, _: String) -> Result<String, HostError> {
        Err(HostError::Forbidden(NO_ACCESS.into()))
    }
    async fn create(&self, _: String) -> Result<String, HostError> {
        Err(HostError::Forbidden(NO_ACCESS.into()))
    }
    async fn delete(&self, _: ObjectRef) -> Result<(), HostError> {
        Err(HostError::Forbidden(NO_ACCESS.into()))
    }
    async fn publish_event(&self, _: EventType, _: String, _: String) {}
    fn subject(&self) -> String {
        "describe".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_delays_are_invalid_results() {
        assert!(matches!(
            reconcile_result(Ok(wit::Action::RequeueAfter(0))),
            Err(ReconcileError::InvalidResult(_))
        ));
        assert!(matches!(
            reconcile_result(Ok(wit::Action::RequeueAfter(u64::MAX))),
            Err(ReconcileError::InvalidResult(_))
        ));
        assert_eq!(
            reconcile_result(Ok(wit::Action::RequeueAfter(1500))),
            Ok(Action::RequeueAfter(Duration::from_millis(1500)))
        );
        assert!(matches!(
            reconcile_result(Err(wit::ReconcileError {
                message: "x".into(),
                retry_after_ms: Some(1)
            })),
            Err(ReconcileError::InvalidResult(_))
        ));
    }
}
