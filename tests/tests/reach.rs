//! A plugin's reach is exactly its grant, on a real API server with RBAC: what it may
//! watch, the identity behind what it reads from the host's caches, the finalizers it
//! may own, grants that leave something out, and the host itself under the RBAC of
//! `deploy/rbac.yaml`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::AuthInfo;
use kubewasm_tests::host::{PluginFiles, TestHost, config_map_grant, write_plugin};
use kubewasm_tests::plugins::{example_bytes, example_grant_in, test_guest_bytes};
use kubewasm_tests::{
    TestUser, admin_client, admin_config, config_map, mirror_source, service_account_token,
    test_namespace, unique_name, wait,
};

const WAIT: Duration = Duration::from_secs(60);

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    }
}

fn rule(resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|n| n.to_string()).collect()),
        ..Default::default()
    }
}

/// A grant for the secret-watcher guest in `namespace`: ConfigMaps, and with
/// `secrets`, list and watch on Secrets.
fn watcher_grant(namespace: &str, secrets: bool) -> String {
    let mut grant = config_map_grant(namespace);
    if secrets {
        grant.push_str(
            "  - apiGroups: [\"\"]\n    resources: [secrets]\n    verbs: [list, watch]\n",
        );
    }
    grant
}

async fn create_secret(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: meta(name, None),
                string_data: Some(BTreeMap::from([("password".into(), "hunter2".into())])),
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_plugin_is_started_only_if_its_grant_allows_watching_its_kind() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "watch-kind").await?;
    create_secret(&client, &namespace, "first").await?;
    let watcher = PluginFiles::new(
        "watcher",
        test_guest_bytes("secret-watcher"),
        watcher_grant(&namespace, false),
    );
    let host = TestHost::start(std::slice::from_ref(&watcher)).await?;
    let runtime = host.manager().runtime().clone();
    let plugins = host.manager().plugins();
    assert!(
        runtime.plugin_names().await.is_empty(),
        "started without the grant"
    );
    let refused = plugins.load("watcher").await.unwrap_err().to_string();
    assert!(
        refused.contains("watches v1 Secret")
            && refused.contains("list on secrets, watch on secrets"),
        "{refused}"
    );

    // The same component with the permission added starts, and copies the Secret: the
    // check was all that kept it from every Secret in its scope.
    write_plugin(
        host.dir(),
        &PluginFiles::new(
            "watcher",
            watcher.wasm.clone(),
            watcher_grant(&namespace, true),
        ),
    )?;
    let _ = plugins.load("watcher").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    wait::until("the first Secret copied", WAIT, || async {
        Ok(config_maps.get_opt("first-copy").await?.map(|_| ()))
    })
    .await?;

    // A reload that takes the permission away is refused; the running version keeps
    // serving.
    write_plugin(host.dir(), &watcher)?;
    let refused = plugins.load("watcher").await.unwrap_err().to_string();
    assert!(refused.contains("list on secrets"), "{refused}");
    assert_eq!(runtime.plugin_names().await, vec!["watcher".to_string()]);
    create_secret(&client, &namespace, "second").await?;
    wait::until(
        "the second Secret copied by the running version",
        WAIT,
        || async { Ok(config_maps.get_opt("second-copy").await?.map(|_| ())) },
    )
    .await?;
    Ok(())
}

/// What the reader plugin's report `<ask>-report` says of its last `kube.get`.
async fn report(api: &Api<ConfigMap>, ask: &str) -> anyhow::Result<Option<String>> {
    Ok(api
        .get_opt(&format!("{ask}-report"))
        .await?
        .and_then(|report| report.data?.get("get").cloned()))
}

#[tokio::test]
async fn reads_from_the_cache_are_authorized_as_the_plugins_service_account() -> anyhow::Result<()>
{
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "cached-reads").await?;
    // The account may watch and write ConfigMaps, and get only `public`.
    let account = TestUser::with_rules(
        &client,
        &namespace,
        vec![rule(
            &["configmaps"],
            &["list", "watch", "create", "update", "patch"],
            &[],
        )],
    )
    .await?;
    let reader = format!("{}-reader", account.name);
    Api::<Role>::namespaced(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta(&reader, None),
                rules: Some(vec![rule(&["configmaps"], &["get"], &["public"])]),
            },
        )
        .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    bindings
        .create(
            &PostParams::default(),
            &role_binding(&reader, "Role", &reader, &account.name, &namespace),
        )
        .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for name in ["public", "private"] {
        api.create(&PostParams::default(), &config_map(name, &[("k", "v")]))
            .await?;
    }
    let grant = format!(
        "apiVersion: kubewasm.dev/v1\nnamespaces: [{namespace}]\nserviceAccount: {namespace}/{}\n\
         permissions:\n  - apiGroups: [\"\"]\n    resources: [configmaps]\n    verbs: [\"*\"]\n",
        account.name
    );
    let _host = TestHost::start_strict(&[PluginFiles::new(
        "reader",
        test_guest_bytes("misbehave"),
        grant,
    )])
    .await?;
    for (ask, name) in [("ask-public", "public"), ("ask-private", "private")] {
        api.create(
            &PostParams::default(),
            &config_map(ask, &[("behaviour", "read-report"), ("name", name)]),
        )
        .await?;
    }

    // The host's store holds `private`, and the grant allows get: the account's RBAC
    // alone refuses it.
    let private = wait::until("the private read's report", WAIT, || {
        report(&api, "ask-private")
    })
    .await?;
    assert!(
        private.starts_with("forbidden:") && private.contains("SubjectAccessReview"),
        "{private}"
    );
    let public = wait::until("the public read's report", WAIT, || {
        report(&api, "ask-public")
    })
    .await?;
    assert_eq!(public, "ok");

    // Revoked, the read is refused once the kept answer expires (10 s).
    bindings.delete(&reader, &DeleteParams::default()).await?;
    wait::until(
        "the public read refused after the revocation",
        WAIT,
        || async {
            Ok(report(&api, "ask-public")
                .await?
                .filter(|outcome| outcome.starts_with("forbidden:")))
        },
    )
    .await?;
    Ok(())
}

fn role_binding(
    name: &str,
    role_kind: &str,
    role: &str,
    account: &str,
    account_namespace: &str,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: role_kind.into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: account.into(),
            namespace: Some(account_namespace.into()),
            ..Default::default()
        }]),
    }
}

#[tokio::test]
async fn grants_that_leave_out_what_matters_are_refused_with_the_fix() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "half-grants").await?;
    let anonymous = config_map_grant(&namespace);
    let nowhere = anonymous.replace(&format!("namespaces: [{namespace}]\n"), "");
    let cases = [
        ("empty", String::new(), "the grant is empty"),
        ("nowhere", nowhere, "namespaces: [\"*\"]"),
        ("anonymous", anonymous.clone(), "--allow-host-identity"),
    ];
    let files: Vec<PluginFiles> = cases
        .iter()
        .map(|(name, grant, _)| PluginFiles::new(name, test_guest_bytes("misbehave"), grant))
        .collect();
    let host = TestHost::start_strict(&files).await?;
    assert!(host.manager().runtime().plugin_names().await.is_empty());
    for (name, _, fix) in cases {
        let refused = host.manager().plugins().load(name).await.unwrap_err();
        assert!(refused.to_string().contains(fix), "{name}: {refused}");
    }
    // The grant without a ServiceAccount runs where the host allows its identity.
    let allowing = TestHost::start(&[PluginFiles::new(
        "anonymous",
        test_guest_bytes("misbehave"),
        anonymous,
    )])
    .await?;
    assert_eq!(
        allowing.manager().runtime().plugin_names().await,
        vec!["anonymous".to_string()]
    );
    Ok(())
}

#[tokio::test]
async fn a_plugin_owns_only_the_finalizers_its_grant_lists_and_never_shares_one()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "finalizers").await?;
    let listed = config_map_grant(&namespace);
    let unlisted = listed.replace("finalizers: [kubewasm.dev/mirror]\n", "");
    let mirror = example_bytes("configmap-mirror");
    let host = TestHost::start(&[
        PluginFiles::new("mirror-a", mirror.clone(), listed.clone()),
        PluginFiles::new("mirror-b", mirror.clone(), listed),
        PluginFiles::new("mirror-c", mirror, unlisted),
    ])
    .await?;
    // Loaded in name order: the first to declare the finalizer has it.
    assert_eq!(
        host.manager().runtime().plugin_names().await,
        vec!["mirror-a".to_string()]
    );
    let plugins = host.manager().plugins();
    let shared = plugins.load("mirror-b").await.unwrap_err().to_string();
    assert!(
        shared.contains("kubewasm.dev/mirror") && shared.contains("mirror-a"),
        "{shared}"
    );
    let unlisted = plugins.load("mirror-c").await.unwrap_err().to_string();
    assert!(
        unlisted.contains("does not list") && unlisted.contains("finalizers"),
        "{unlisted}"
    );
    Ok(())
}

#[tokio::test]
async fn a_grant_that_pins_a_digest_applies_to_that_component_only() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "digest").await?;
    let mirror = example_bytes("configmap-mirror");
    let digest = kubewasm::sandbox::digest(&mirror);
    let pinned =
        |digest: &str| format!("{}digest: sha256:{digest}\n", config_map_grant(&namespace));
    let host = TestHost::start(&[
        PluginFiles::new("pinned", mirror.clone(), pinned(&digest)),
        PluginFiles::new("other", mirror, pinned(&"0".repeat(64))),
    ])
    .await?;
    assert_eq!(
        host.manager().runtime().plugin_names().await,
        vec!["pinned".to_string()]
    );
    let refused = host
        .manager()
        .plugins()
        .load("other")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&format!("sha256:{}", "0".repeat(64)))
            && refused.contains(&format!("sha256:{digest}"))
            && refused.contains("update the grant's digest"),
        "{refused}"
    );
    Ok(())
}

/// The rules of `deploy/rbac.yaml`'s ClusterRole `name`.
fn deploy_rules(name: &str) -> anyhow::Result<Vec<PolicyRule>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rbac.yaml");
    let text = std::fs::read_to_string(path)?;
    for document in serde_norway::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document)?;
        if value["kind"] == "ClusterRole" && value["metadata"]["name"] == name {
            return Ok(serde_json::from_value::<ClusterRole>(value)?
                .rules
                .unwrap_or_default());
        }
    }
    anyhow::bail!("deploy/rbac.yaml has no ClusterRole {name}")
}

#[tokio::test]
async fn the_example_plugin_runs_with_the_host_under_the_deploy_rbac() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let host_namespace = test_namespace(&client, "host").await?;
    let namespace = test_namespace(&client, "deploy-rbac").await?;
    let pp = PostParams::default();
    // The host's account, bound as deploy/rbac.yaml binds it: its host rules
    // cluster-wide, impersonation in the namespace of the plugin's account.
    let host_account = unique_name("kubewasm");
    Api::<ServiceAccount>::namespaced(client.clone(), &host_namespace)
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta(&host_account, None),
                ..Default::default()
            },
        )
        .await?;
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for role in ["kubewasm-host", "kubewasm-impersonate-plugins"] {
        roles
            .create(
                &pp,
                &ClusterRole {
                    metadata: meta(&format!("{host_account}-{role}"), None),
                    rules: Some(deploy_rules(role)?),
                    ..Default::default()
                },
            )
            .await?;
    }
    let host_binding = role_binding(
        &format!("{host_account}-kubewasm-host"),
        "ClusterRole",
        &format!("{host_account}-kubewasm-host"),
        &host_account,
        &host_namespace,
    );
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(
            &pp,
            &ClusterRoleBinding {
                metadata: host_binding.metadata,
                role_ref: host_binding.role_ref,
                subjects: host_binding.subjects,
            },
        )
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), &namespace)
        .create(
            &pp,
            &role_binding(
                "kubewasm-impersonate-plugins",
                "ClusterRole",
                &format!("{host_account}-kubewasm-impersonate-plugins"),
                &host_account,
                &host_namespace,
            ),
        )
        .await?;
    let mut host_identity = admin_config().await?;
    let token = service_account_token(&client, &host_namespace, &host_account).await?;
    host_identity.auth_info =
        serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))?;

    // The plugin's account may use ConfigMaps in its namespace.
    let account = TestUser::with_rules(
        &client,
        &namespace,
        vec![rule(&["configmaps"], &["*"], &[])],
    )
    .await?;
    let grant = format!(
        "{}serviceAccount: {namespace}/{}\n",
        example_grant_in("configmap-mirror", &namespace),
        account.name
    );
    let host = TestHost::start_strict_as(
        &[PluginFiles::new(
            "mirror",
            example_bytes("configmap-mirror"),
            grant,
        )],
        Some(host_identity),
    )
    .await?;
    assert_eq!(
        host.manager().runtime().plugin_names().await,
        vec!["mirror".to_string()]
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let source = mirror_source("demo");
    api.create(&pp, &source).await?;
    wait::until(
        "the mirror, and the finalizer on its source",
        WAIT,
        || async {
            let finalized = api
                .get("demo")
                .await?
                .metadata
                .finalizers
                .is_some_and(|f| f.iter().any(|f| f == "kubewasm.dev/mirror"));
            Ok((finalized && api.get_opt("demo-mirror").await?.is_some()).then_some(()))
        },
    )
    .await?;
    api.delete("demo", &DeleteParams::default()).await?;
    wait::until("cleanup: the source and its mirror gone", WAIT, || async {
        Ok(
            (api.get_opt("demo").await?.is_none() && api.get_opt("demo-mirror").await?.is_none())
                .then_some(()),
        )
    })
    .await?;
    host.assert_no_reconcile_errors("mirror");
    Ok(())
}
