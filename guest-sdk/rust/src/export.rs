//! The bridge between a [`Reconciler`] and the exported WIT interface.

use std::marker::PhantomData;

use crate::bindings::exports::kubewasm::controller::plugin::Guest;
use crate::bindings::kubewasm::controller::types as wit;
use crate::{Action, Error, Object, Reconciler};

/// Implements the exported interface for `R`; named by [`crate::export!`].
pub struct Exported<R>(PhantomData<R>);

impl<R: Reconciler> Guest for Exported<R> {
    fn describe() -> wit::Description {
        wit::Description {
            watch: wit::Watch {
                api_version: R::Resource::API_VERSION.to_string(),
                kind: R::Resource::KIND.to_string(),
                label_selector: R::LABEL_SELECTOR.map(str::to_string),
            },
            finalizer: R::FINALIZER_NAME.map(str::to_string),
            owns: R::owns()
                .into_iter()
                .map(|owned| wit::KindRef {
                    api_version: owned.api_version,
                    kind: owned.kind,
                })
                .collect(),
        }
    }

    fn apply(object: String) -> Result<wit::Action, wit::ReconcileError> {
        into_wit(parse::<R::Resource>(&object).and_then(R::apply))
    }

    fn cleanup(object: String) -> Result<wit::Action, wit::ReconcileError> {
        into_wit(parse::<R::Resource>(&object).and_then(R::cleanup))
    }
}

fn parse<K: Object>(json: &str) -> Result<K, Error> {
    serde_json::from_str(json).map_err(|err| {
        Error::msg(format!(
            "the object is not a valid {} {}: {err}",
            K::API_VERSION,
            K::KIND
        ))
    })
}

fn into_wit(result: Result<Action, Error>) -> Result<wit::Action, wit::ReconcileError> {
    match result {
        Ok(Action::RequeueAfter(delay)) => Ok(wit::Action::RequeueAfter(millis(delay))),
        Ok(Action::AwaitChange) => Ok(wit::Action::AwaitChange),
        Ok(Action::Default) => Ok(wit::Action::Default),
        Err(err) => Err(wit::ReconcileError {
            message: err.message().to_string(),
            retry_after_ms: err.retry_delay().map(millis),
        }),
    }
}

fn millis(delay: std::time::Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}
