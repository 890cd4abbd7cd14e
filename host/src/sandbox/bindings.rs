//! Host-side bindings of the WIT contract, and the host imports served over
//! [`HostCalls`](crate::reconciler::HostCalls).

use std::future::Future;
use std::sync::Arc;

use crate::reconciler::{self, HostCalls, HostError};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "reconciler",
    imports: { default: async },
    exports: { default: async },
});

use self::kubewasm::controller::{events, kube, log, types};

use super::call::CallState;

impl types::Host for CallState {}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => reconciler::LogLevel::Trace,
            log::Level::Debug => reconciler::LogLevel::Debug,
            log::Level::Info => reconciler::LogLevel::Info,
            log::Level::Warn => reconciler::LogLevel::Warn,
            log::Level::Error => reconciler::LogLevel::Error,
        };
        self.log.line(level, &self.subject, &message);
    }
}

impl events::Host for CallState {
    async fn publish(&mut self, event_type: events::EventType, reason: String, note: String) {
        let event_type = match event_type {
            events::EventType::Normal => reconciler::EventType::Normal,
            events::EventType::Warning => reconciler::EventType::Warning,
        };
        let _ = self
            .on_host(move |host| async move {
                host.publish_event(event_type, reason, note).await;
                Ok(())
            })
            .await;
    }
}

impl CallState {
    /// Runs a host call on the host's runtime (the guest's threads run at a lower
    /// priority), with the guest's CPU clock stopped.
    fn on_host<T, F>(
        &self,
        call: impl FnOnce(Arc<dyn HostCalls>) -> F,
    ) -> impl Future<Output = Result<T, kube::Error>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = Result<T, HostError>> + Send + 'static,
    {
        let clock = self.clock.clone();
        clock.stop();
        let work = self.host_runtime.spawn(call(self.host.clone()));
        async move {
            let result = work.await;
            clock.resume();
            match result {
                Ok(result) => result.map_err(wit_error),
                Err(err) => Err(kube::Error::Other(format!("the host call failed: {err}"))),
            }
        }
    }
}

fn object_ref(target: types::ObjectRef) -> reconciler::ObjectRef {
    reconciler::ObjectRef {
        api_version: target.api_version,
        kind: target.kind,
        namespace: target.namespace,
        name: target.name,
    }
}

fn wit_error(error: HostError) -> kube::Error {
    match error {
        HostError::NotFound(message) => kube::Error::NotFound(message),
        HostError::Forbidden(message) => kube::Error::Forbidden(message),
        HostError::Conflict(message) => kube::Error::Conflict(message),
        HostError::Invalid(message) => kube::Error::Invalid(message),
        HostError::Unavailable(message) => kube::Error::Unavailable(message),
        HostError::Other(message) => kube::Error::Other(message),
    }
}

impl kube::Host for CallState {
    async fn get(&mut self, target: types::ObjectRef) -> Result<String, kube::Error> {
        self.on_host(move |host| async move { host.get(object_ref(target)).await })
            .await
    }

    async fn list(
        &mut self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Result<String, kube::Error> {
        self.on_host(move |host| async move {
            host.list(api_version, kind, namespace, label_selector)
                .await
        })
        .await
    }

    async fn apply(&mut self, object: String) -> Result<String, kube::Error> {
        self.on_host(move |host| async move { host.apply(object).await })
            .await
    }

    async fn patch_status(
        &mut self,
        target: types::ObjectRef,
        status: String,
    ) -> Result<String, kube::Error> {
        self.on_host(move |host| async move { host.patch_status(object_ref(target), status).await })
            .await
    }

    async fn create(&mut self, object: String) -> Result<String, kube::Error> {
        self.on_host(move |host| async move { host.create(object).await })
            .await
    }

    async fn delete(&mut self, target: types::ObjectRef) -> Result<(), kube::Error> {
        self.on_host(move |host| async move { host.delete(object_ref(target)).await })
            .await
    }
}
