//! Every guest SDK through its configmap-mirror plugin, in memory: JSON crosses intact
//! (escapes, non-ASCII), Kubernetes errors reach the plugin and fail the reconcile with
//! their message, and `delete_if_exists` treats a missing object as deleted.

use std::sync::Arc;

use kubewasm::memory_host::MemoryHost;
use kubewasm::reconciler::{
    Action, EventType, HostCalls, HostError, ObjectRef, ReconcileError, Reconciler,
};
use kubewasm::sandbox::{PluginOptions, Sandbox};
use kubewasm_tests::plugins::example_bytes;
use serde_json::{Value, json};

/// A host whose writes are all refused, as when the grant does not allow them.
struct RefusingWrites(Arc<MemoryHost>);

const REFUSAL: &str = "writes are refused in this test";

#[async_trait::async_trait]
impl HostCalls for RefusingWrites {
    async fn get(&self, target: ObjectRef) -> Result<String, HostError> {
        self.0.get(target).await
    }
    async fn list(
        &self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Result<String, HostError> {
        self.0
            .list(api_version, kind, namespace, label_selector)
            .await
    }
    async fn apply(&self, _object: String) -> Result<String, HostError> {
        Err(HostError::Forbidden(REFUSAL.into()))
    }
    async fn patch_status(&self, _target: ObjectRef, _status: String) -> Result<String, HostError> {
        Err(HostError::Forbidden(REFUSAL.into()))
    }
    async fn create(&self, _object: String) -> Result<String, HostError> {
        Err(HostError::Forbidden(REFUSAL.into()))
    }
    async fn delete(&self, _target: ObjectRef) -> Result<(), HostError> {
        Err(HostError::Forbidden(REFUSAL.into()))
    }
    async fn publish_event(&self, event_type: EventType, reason: String, note: String) {
        self.0.publish_event(event_type, reason, note).await
    }
    fn subject(&self) -> String {
        self.0.subject()
    }
}

fn source(data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "source",
            "namespace": "team-a",
            "labels": {"kubewasm.dev/mirror": "true"},
        },
        "data": data,
    })
}

fn mirror_ref() -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("team-a".into()),
        name: "source-mirror".into(),
    }
}

fn assert_refused(language: &str, call: &str, result: Result<Action, ReconcileError>) {
    match result {
        Err(ReconcileError::Reported { message, .. }) => assert!(
            message.contains(REFUSAL),
            "{language} {call}: the error message {message:?} lost the host's"
        ),
        other => panic!("{language} {call}: expected a reported error, got {other:?}"),
    }
}

async fn sdk_round_trip(plugin_name: &str) -> anyhow::Result<()> {
    let sandbox = Sandbox::new(kubewasm_tests::sandbox_config()).expect("a sandbox");
    let (plugin, _) = sandbox
        .load(
            plugin_name,
            example_bytes(plugin_name),
            PluginOptions::default(),
        )
        .await
        .expect("the example loads");
    let data = json!({
        "quoted": "say \"hi\"\\n\tthen\nleave",
        "unicode": "grüße, €, 𝄞",
        "empty": "",
        "json": "{\"nested\": [1, 2]}",
    });
    let object = source(data.clone()).to_string();

    let host = MemoryHost::new("team-a/source");
    let applied = plugin.apply(&object, host.clone()).await;
    assert_eq!(applied.unwrap(), Action::Default, "{plugin_name} apply");
    let mirror = host.object(&mirror_ref()).expect("the mirror was applied");
    assert_eq!(
        mirror["data"], data,
        "{plugin_name}: data crossed unchanged"
    );
    assert_eq!(
        mirror["metadata"]["labels"]["kubewasm.dev/mirror-of"],
        "source"
    );

    let refusing = Arc::new(RefusingWrites(MemoryHost::new("team-a/source")));
    assert_refused(
        plugin_name,
        "apply",
        plugin.apply(&object, refusing.clone()).await,
    );
    assert_refused(
        plugin_name,
        "cleanup",
        plugin.cleanup(&object, refusing).await,
    );

    // The mirror is gone already: cleanup succeeds without it.
    let empty = MemoryHost::new("team-a/source");
    assert_eq!(
        plugin.cleanup(&object, empty.clone()).await.unwrap(),
        Action::Default,
        "{plugin_name} cleanup of a missing mirror"
    );
    plugin.cleanup(&object, host.clone()).await.unwrap();
    assert!(
        host.object(&mirror_ref()).is_none(),
        "{plugin_name} cleanup"
    );
    Ok(())
}

kubewasm_tests::test_every_language!(sdk_round_trip);
