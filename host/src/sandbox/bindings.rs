//! Host-side bindings of the WIT contract, and the host imports served over
//! [`HostCalls`](crate::reconciler::HostCalls).

use crate::reconciler::{self, HostError};

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
        self.host.publish_event(event_type, reason, note).await;
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
        self.host.get(object_ref(target)).await.map_err(wit_error)
    }

    async fn list(
        &mut self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Result<String, kube::Error> {
        self.host
            .list(api_version, kind, namespace, label_selector)
            .await
            .map_err(wit_error)
    }

    async fn apply(&mut self, object: String) -> Result<String, kube::Error> {
        self.host.apply(object).await.map_err(wit_error)
    }

    async fn patch_status(
        &mut self,
        target: types::ObjectRef,
        status: String,
    ) -> Result<String, kube::Error> {
        self.host
            .patch_status(object_ref(target), status)
            .await
            .map_err(wit_error)
    }

    async fn create(&mut self, object: String) -> Result<String, kube::Error> {
        self.host.create(object).await.map_err(wit_error)
    }

    async fn delete(&mut self, target: types::ObjectRef) -> Result<(), kube::Error> {
        self.host
            .delete(object_ref(target))
            .await
            .map_err(wit_error)
    }
}
