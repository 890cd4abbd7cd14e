//! The configmap-mirror plugin on a real API server, in every language it is written
//! in: mirrors, finalizers, updates, deletions, and deletions while the host is down.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kubewasm_tests::host::{PluginFiles, TestHost};
use kubewasm_tests::plugins::{example_bytes, example_grant_in};
use kubewasm_tests::{admin_client, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(60);

fn source(name: &str, labelled: bool) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: labelled
                .then(|| BTreeMap::from([("kubewasm.dev/mirror".to_string(), "true".to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("value".to_string(), name.to_string())])),
        ..Default::default()
    }
}

/// Runs each scenario below once per language, as `<scenario>::<language>`.
macro_rules! in_every_language {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            kubewasm_tests::test_every_language!(super::$scenario);
        }
    )*};
}

in_every_language!(
    a_hundred_labelled_config_maps_are_mirrored_and_kept_in_sync,
    deleting_a_source_deletes_its_mirror_and_then_the_source,
    sources_deleted_while_the_host_is_down_are_cleaned_up_after_restart,
);

/// A host running `plugin` (an example's name) as plugin `mirror`.
async fn mirror_host(plugin: &str, namespace: &str) -> anyhow::Result<TestHost> {
    TestHost::start(&[PluginFiles::new(
        "mirror",
        example_bytes(plugin),
        // The example's own grant, narrowed to the test's namespace.
        example_grant_in(plugin, namespace),
    )])
    .await
}

/// ConfigMaps of `namespace` by name.
async fn config_maps(api: &Api<ConfigMap>) -> anyhow::Result<BTreeMap<String, ConfigMap>> {
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|cm| (cm.metadata.name.clone().unwrap_or_default(), cm))
        .collect())
}

async fn create_sources(
    api: &Api<ConfigMap>,
    names: impl Iterator<Item = String>,
    labelled: bool,
) -> anyhow::Result<()> {
    for name in names {
        api.create(&PostParams::default(), &source(&name, labelled))
            .await?;
    }
    Ok(())
}

fn has_finalizer(cm: &ConfigMap) -> bool {
    cm.metadata
        .finalizers
        .as_ref()
        .is_some_and(|finalizers| finalizers.iter().any(|f| f == "kubewasm.dev/mirror"))
}

async fn setup(prefix: &str) -> anyhow::Result<(Client, String, Api<ConfigMap>)> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, prefix).await?;
    let api = Api::namespaced(client.clone(), &namespace);
    Ok((client, namespace, api))
}

async fn a_hundred_labelled_config_maps_are_mirrored_and_kept_in_sync(
    plugin: &str,
) -> anyhow::Result<()> {
    let (_client, namespace, api) = setup("mirror-sync").await?;
    let host = mirror_host(plugin, &namespace).await?;
    let labelled: Vec<String> = (0..100).map(|i| format!("source-{i:03}")).collect();
    create_sources(&api, labelled.iter().cloned(), true).await?;
    create_sources(&api, (0..5).map(|i| format!("plain-{i}")), false).await?;

    let all = wait::until(
        "100 mirrors with the data of their sources",
        WAIT,
        || async {
            let all = config_maps(&api).await?;
            let mirrored = labelled.iter().all(|name| {
                let mirror = all.get(&format!("{name}-mirror"));
                mirror.is_some_and(|mirror| {
                    mirror.data == all[name].data
                        && mirror
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubewasm.dev/mirror-of"))
                            == Some(name)
                }) && has_finalizer(&all[name])
            });
            Ok(mirrored.then_some(all))
        },
    )
    .await?;
    assert_eq!(
        all.len(),
        100 + 100 + 5,
        "sources, mirrors and the unlabelled: {:?}",
        all.keys()
    );
    for i in 0..5 {
        let plain = &all[&format!("plain-{i}")];
        assert!(
            !has_finalizer(plain),
            "an unlabelled ConfigMap got the finalizer"
        );
        assert!(!all.contains_key(&format!("plain-{i}-mirror")));
    }

    // A data change reaches the mirror.
    api.patch(
        "source-042",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"value": "changed", "extra": "yes"}})),
    )
    .await?;
    wait::until("the changed data in the mirror", WAIT, || async {
        let mirror = api.get("source-042-mirror").await?;
        let data = mirror.data.unwrap_or_default();
        Ok(
            (data.get("value").map(String::as_str) == Some("changed")
                && data.contains_key("extra"))
            .then_some(()),
        )
    })
    .await?;
    host.assert_no_reconcile_errors("mirror");
    Ok(())
}

async fn deleting_a_source_deletes_its_mirror_and_then_the_source(
    plugin: &str,
) -> anyhow::Result<()> {
    let (_client, namespace, api) = setup("mirror-delete").await?;
    let _host = mirror_host(plugin, &namespace).await?;
    create_sources(&api, std::iter::once("doomed".to_string()), true).await?;
    wait::until("the mirror", WAIT, || async {
        Ok(api.get_opt("doomed-mirror").await?)
    })
    .await?;

    api.delete("doomed", &DeleteParams::default()).await?;
    wait::until("the mirror and the source to be gone", WAIT, || async {
        let all = config_maps(&api).await?;
        Ok((!all.contains_key("doomed-mirror") && !all.contains_key("doomed")).then_some(()))
    })
    .await?;
    Ok(())
}

async fn sources_deleted_while_the_host_is_down_are_cleaned_up_after_restart(
    plugin: &str,
) -> anyhow::Result<()> {
    let (_client, namespace, api) = setup("mirror-restart").await?;
    let mut host = mirror_host(plugin, &namespace).await?;
    let names: Vec<String> = (0..20).map(|i| format!("gone-{i:02}")).collect();
    create_sources(&api, names.iter().cloned(), true).await?;
    wait::until("20 mirrors", WAIT, || async {
        let all = config_maps(&api).await?;
        Ok(names
            .iter()
            .all(|name| all.contains_key(&format!("{name}-mirror")) && has_finalizer(&all[name]))
            .then_some(()))
    })
    .await?;

    host.stop().await;
    for name in &names {
        api.delete(name, &DeleteParams::default()).await?;
    }
    // With the host down, the finalizer holds every source, and the mirrors stay.
    let all = config_maps(&api).await?;
    for name in &names {
        assert!(
            all[name].metadata.deletion_timestamp.is_some(),
            "{name} is not being deleted"
        );
        assert!(all.contains_key(&format!("{name}-mirror")));
    }

    host.restart().await?;
    wait::until(
        "mirrors and sources gone after the restart",
        WAIT,
        || async {
            let all = config_maps(&api).await?;
            Ok(names
                .iter()
                .all(|name| !all.contains_key(name) && !all.contains_key(&format!("{name}-mirror")))
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}
