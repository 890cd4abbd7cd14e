//! Host-side bindings of the WIT contract, and the host imports served over
//! [`HostCalls`](crate::reconciler::HostCalls).

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::Either;
use tokio_util::task::AbortOnDropHandle;

use crate::reconciler::{self, HostCalls, HostError};
use crate::thread_cpu::Metered;

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
        self.output.add(message.len());
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
    /// Runs a host call with the guest's CPU clock stopped: within the call's own task
    /// while the call runs on the guest threads of normal priority (the usual case: no
    /// task to spawn, no thread to wake), and on `host_runtime` otherwise. Never on the
    /// demoted threads: a connection to the API server opened there would be driven at
    /// idle priority for every later request that reuses it.
    ///
    /// Either way its CPU time stays out of the plugin's budget, as it was while host
    /// calls ran in tasks of their own: metered apart here, it is left out of the
    /// reconcile's poll around it. Charging it is right in principle, but at the
    /// default budget it throttles a plugin that writes hundreds of objects a second
    /// (BENCHMARKS.md, "Beside hostile plugins"), so it waits for budgets sized for it.
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
        let work = call(self.host.clone());
        let work = if self.normal_threads.include_current() {
            Either::Left(Metered::new(work).map(|(output, _uncharged)| Ok(output)))
        } else {
            // Dropped with the call (its plugin stopped), the request goes too.
            Either::Right(AbortOnDropHandle::new(self.host_runtime.spawn(work)))
        };
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
