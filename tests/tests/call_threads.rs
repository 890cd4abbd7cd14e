//! Where a call runs: asked for by a plugin's controller on the guest threads, within
//! the controller's own reconcile task, host calls included; once demoted, on the
//! demoted threads, its host calls handed back to normal priority.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubewasm::memory_host::MemoryHost;
use kubewasm::reconciler::{
    EventType, HostCalls, HostError, ObjectRef, ReconcileError, Reconciler,
};
use kubewasm::sandbox::{Limits, PluginOptions, Sandbox, WasmPlugin};
use kubewasm_tests::plugins::test_guest_bytes;
use serde_json::json;

/// Where a piece of work ran: its thread's name and its task.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    thread: String,
    task: Option<tokio::task::Id>,
}

impl Place {
    fn here() -> Self {
        Self {
            thread: std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string(),
            task: tokio::task::try_id(),
        }
    }
}

/// The in-memory host, recording where `get` ran.
struct RecordingHost {
    memory: Arc<MemoryHost>,
    get_ran_at: Mutex<Option<Place>>,
}

impl RecordingHost {
    fn new() -> Self {
        Self {
            memory: MemoryHost::new("default/subject"),
            get_ran_at: Mutex::new(None),
        }
    }

    fn get_ran_at(&self) -> Place {
        self.get_ran_at
            .lock()
            .unwrap()
            .clone()
            .expect("the guest called get")
    }
}

#[async_trait::async_trait]
impl HostCalls for RecordingHost {
    async fn get(&self, target: ObjectRef) -> Result<String, HostError> {
        *self.get_ran_at.lock().unwrap() = Some(Place::here());
        self.memory.get(target).await
    }
    async fn list(
        &self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        selector: Option<String>,
    ) -> Result<String, HostError> {
        self.memory
            .list(api_version, kind, namespace, selector)
            .await
    }
    async fn apply(&self, object: String) -> Result<String, HostError> {
        self.memory.apply(object).await
    }
    async fn patch_status(&self, target: ObjectRef, status: String) -> Result<String, HostError> {
        self.memory.patch_status(target, status).await
    }
    async fn create(&self, object: String) -> Result<String, HostError> {
        self.memory.create(object).await
    }
    async fn delete(&self, target: ObjectRef) -> Result<(), HostError> {
        self.memory.delete(target).await
    }
    async fn publish_event(&self, event_type: EventType, reason: String, note: String) {
        self.memory.publish_event(event_type, reason, note).await
    }
    fn subject(&self) -> String {
        self.memory.subject()
    }
}

/// The misbehave guest with a budget of a whole core (so that a debt is paid quickly).
async fn misbehave() -> Arc<WasmPlugin> {
    let sandbox = Sandbox::new(kubewasm_tests::sandbox_config()).expect("a sandbox");
    let options = PluginOptions {
        limits: Limits {
            cpu_millicores: 1000,
            ..Limits::default()
        },
        ..Default::default()
    };
    let (plugin, _) = sandbox
        .load("test", test_guest_bytes("misbehave"), options)
        .await
        .expect("the plugin loads");
    Arc::new(plugin)
}

/// Applies the `get` behaviour from a task on the plugin's own runtime, as its
/// controller does; returns where that task ran, where the host call ran, and what the
/// guest made of the call.
async fn get_from_the_controller(plugin: &Arc<WasmPlugin>) -> (Place, Place, String) {
    let runtime = plugin
        .runtime()
        .expect("a sandboxed plugin names the runtime of its controller");
    let host = Arc::new(RecordingHost::new());
    let (caller, reported) = runtime
        .spawn({
            let (plugin, host) = (plugin.clone(), host.clone());
            async move {
                let object = json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "subject", "namespace": "default"},
                    "data": {"behaviour": "get", "name": "elsewhere"},
                });
                let result = plugin.apply(&object.to_string(), host).await;
                (Place::here(), result)
            }
        })
        .await
        .expect("the controller's task finishes");
    let reported = match reported {
        Err(ReconcileError::Reported { message, .. }) => message,
        other => panic!("expected the guest's report, got {other:?}"),
    };
    (caller, host.get_ran_at(), reported)
}

#[tokio::test]
async fn a_call_and_its_host_calls_run_within_the_controllers_task() {
    let plugin = misbehave().await;
    let (caller, host_call, reported) = get_from_the_controller(&plugin).await;
    assert_eq!(caller.thread, "kubewasm-guest");
    assert!(reported.contains("NotFound"), "{reported}");
    assert_eq!(host_call, caller, "no task of its own, no other thread");
}

#[tokio::test]
async fn host_calls_of_a_demoted_call_run_at_normal_priority() {
    let plugin = misbehave().await;
    // 100 ms past the 200 ms burst: the plugin is in debt, so its next call pays 100 ms
    // and runs demoted.
    plugin.charge_host_time(Duration::from_millis(300));
    let (caller, host_call, reported) = get_from_the_controller(&plugin).await;
    assert!(reported.contains("NotFound"), "{reported}");
    assert_eq!(
        host_call.thread, "kubewasm-guest",
        "not on the demoted threads"
    );
    assert_ne!(
        host_call.task, caller.task,
        "handed from the demoted threads to a task of its own"
    );
}
