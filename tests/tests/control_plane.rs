//! The local control plane is real: watches deliver, RBAC denies.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use kubewasm_tests::{TestUser, admin_client, test_namespace};

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

#[tokio::test]
async fn a_watcher_sees_every_created_config_map() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "watch").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);

    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list completes before anything is created, so every object below
    // must arrive as a watch event.
    loop {
        match events.try_next().await? {
            Some(Event::InitDone) => break,
            Some(_) => {}
            None => anyhow::bail!("watch ended during the initial list"),
        }
    }

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
