//! A plugin that could not start for a reason outside its files starts once that
//! passes, with no change to its files: here the CustomResourceDefinition of the kind it
//! watches, installed after the host started.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kubewasm_tests::host::{PluginFiles, TestHost};
use kubewasm_tests::plugins::test_guest_bytes;
use kubewasm_tests::{admin_client, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(90);
const CRD: &str = "widgets.kubewasm.test";

fn widget_crd() -> anyhow::Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD},
        "spec": {
            "group": "kubewasm.test",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                }},
            }],
        },
    }))?)
}

#[tokio::test]
async fn a_plugin_whose_kind_is_not_served_yet_starts_once_its_crd_is_installed()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    // Left over from an earlier run against the same control plane.
    if crds.get_opt(CRD).await?.is_some() {
        crds.delete(CRD, &DeleteParams::default()).await?;
        wait::until("the old CRD gone", WAIT, || async {
            Ok(crds.get_opt(CRD).await?.is_none().then_some(()))
        })
        .await?;
    }
    let namespace = test_namespace(&client, "late-kind").await?;
    let grant = format!(
        "apiVersion: kubewasm.dev/v1\nnamespaces: [{namespace}]\npermissions:\n  - apiGroups: [kubewasm.test]\n    \
         resources: [widgets]\n    verbs: [\"*\"]\n"
    );
    let host = TestHost::start(&[PluginFiles::new(
        "widgets",
        test_guest_bytes("widget-watcher"),
        grant,
    )])
    .await?;
    let runtime = host.manager().runtime().clone();
    assert!(
        runtime.plugin_names().await.is_empty(),
        "started without its kind"
    );

    crds.create(&PostParams::default(), &widget_crd()?).await?;
    wait::until("the plugin to start", WAIT, || async {
        Ok((runtime.plugin_names().await == ["widgets"]).then_some(()))
    })
    .await?;
    // And it watches the new kind: its watch has listed it. (No Widget is created: the
    // API server these tests build, 1.20 with a newer Go, crashes decoding a custom
    // resource.)
    wait::until("the plugin's watch synced", WAIT, || async {
        Ok(
            (host.manager().runtime().ready() && host.metric("kubewasm_watches", "") == 1.0)
                .then_some(()),
        )
    })
    .await?;
    crds.delete(CRD, &DeleteParams::default()).await?;
    Ok(())
}
