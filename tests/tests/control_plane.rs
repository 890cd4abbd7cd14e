//! The local control plane is real: watches deliver, RBAC denies, custom resources are
//! served.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use kubewasm_tests::{TestUser, admin_client, test_namespace, unique_name, wait};

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some([("key".to_string(), name.to_string())].into()),
        ..Default::default()
    }
}

/// Waits until `events` has completed its initial list.
async fn listed<K>(
    events: &mut (impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Unpin),
) -> anyhow::Result<()> {
    loop {
        match events.try_next().await? {
            Some(Event::InitDone) => return Ok(()),
            Some(_) => {}
            None => anyhow::bail!("watch ended during the initial list"),
        }
    }
}

#[tokio::test]
async fn a_watcher_sees_every_created_config_map() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "watch").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);

    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list completes before anything is created, so every object below
    // must arrive as a watch event.
    listed(&mut events).await?;

    let expected: BTreeSet<String> = (0..200).map(|i| format!("cm-{i:03}")).collect();
    let creator = {
        let api = api.clone();
        let names = expected.clone();
        tokio::spawn(async move {
            for name in names {
                api.create(&PostParams::default(), &config_map(&name))
                    .await?;
            }
            anyhow::Ok(())
        })
    };

    let mut seen = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while seen.len() < expected.len() {
            match events.try_next().await? {
                Some(Event::Apply(cm)) => {
                    seen.insert(cm.name_any());
                }
                Some(_) => {}
                None => anyhow::bail!("watch ended with {} of 200 seen", seen.len()),
            }
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("only {} of 200 ConfigMaps seen in 60 s", seen.len()))??;
    creator.await??;
    assert_eq!(seen, expected);
    Ok(())
}

#[tokio::test]
async fn a_user_with_rbac_only_in_one_namespace_is_forbidden_in_another() -> anyhow::Result<()> {
    let admin = admin_client().await?;
    let allowed = test_namespace(&admin, "team-a").await?;
    let other = test_namespace(&admin, "team-b").await?;
    let user = TestUser::with_rules(
        &admin,
        &allowed,
        vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into(), "create".into()],
            ..Default::default()
        }],
    )
    .await?;

    let in_allowed: Api<ConfigMap> = Api::namespaced(user.client.clone(), &allowed);
    in_allowed
        .create(&PostParams::default(), &config_map("ok"))
        .await?;
    assert_eq!(in_allowed.list(&Default::default()).await?.items.len(), 1);

    let in_other: Api<ConfigMap> = Api::namespaced(user.client.clone(), &other);
    for result in [
        in_other
            .create(&PostParams::default(), &config_map("denied"))
            .await
            .map(|_| ()),
        in_other.list(&Default::default()).await.map(|_| ()),
    ] {
        match result {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
            other => panic!("expected 403 for {} in {other:?}", user.username()),
        }
    }
    let untouched: Api<ConfigMap> = Api::namespaced(admin, &other);
    assert!(untouched.get_opt("denied").await?.is_none());
    Ok(())
}

/// A CustomResourceDefinition of a kind of its own, with the status subresource and a
/// printer column.
fn gadget_crd(group: &str) -> anyhow::Result<CustomResourceDefinition> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer"},
                            "labels": {"type": "object",
                                       "additionalProperties": {"type": "string"}},
                        }},
                        "status": {"type": "object", "properties": {
                            "phase": {"type": "string"},
                        }},
                    },
                }},
            }],
        },
    }))?)
}

/// Custom resources are served: created, watched, status-patched and deleted, and the
/// API server is still up afterwards (kube-apiserver built with the vendored reflect2
/// 1.0.1 under Go >= 1.18 died on the first create; `scripts/assets.sh` replaces it).
#[tokio::test]
async fn custom_resources_are_created_watched_status_patched_and_deleted() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "gadgets").await?;
    // A group of this test binary's own, so that runs against one control plane do
    // not meet.
    let group = format!("{}.kubewasm.test", unique_name("g"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &gadget_crd(&group)?)
        .await?;
    let gvk = GroupVersionKind::gvk(&group, "v1", "Gadget");
    let resource = wait::until(
        "the Gadget kind served",
        Duration::from_secs(60),
        || async {
            match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok((resource, _)) => Ok(Some(resource)),
                Err(_) => Ok(None),
            }
        },
    )
    .await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    listed(&mut events).await?;
    let gadget: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": format!("{group}/v1"),
        "kind": "Gadget",
        "metadata": {"name": "one"},
        "spec": {"size": 3, "labels": {"a": "b"}},
    }))?;
    api.create(&PostParams::default(), &gadget).await?;
    api.patch_status(
        "one",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"phase": "Ready"}})),
    )
    .await?;
    api.delete("one", &DeleteParams::default()).await?;

    // The watch sees the object, then its status, then its deletion.
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.try_next().await? {
                Some(Event::Apply(object)) => {
                    let phase = object.data["status"]["phase"].as_str().map(str::to_string);
                    seen.push(format!("apply {}", phase.as_deref().unwrap_or("-")));
                }
                Some(Event::Delete(_)) => {
                    seen.push("delete".into());
                    return anyhow::Ok(());
                }
                Some(_) => {}
                None => anyhow::bail!("watch ended after {seen:?}"),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no deletion seen in 60 s"))??;
    assert_eq!(
        seen.first().map(String::as_str),
        Some("apply -"),
        "{seen:?}"
    );
    assert!(seen.contains(&"apply Ready".to_string()), "{seen:?}");

    // Still serving, the printer column included.
    assert!(api.get_opt("one").await?.is_none());
    let stored = crds.get(&format!("gadgets.{group}")).await?;
    let columns = &stored.spec.versions[0].additional_printer_columns;
    assert_eq!(columns.as_ref().map(|c| c[0].name.as_str()), Some("Phase"));
    crds.delete(&format!("gadgets.{group}"), &DeleteParams::default())
        .await?;
    Ok(())
}
