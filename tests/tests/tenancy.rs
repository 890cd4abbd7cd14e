//! Tenancy on a real API server with RBAC: grants checked in the host, impersonation
//! checked by the API server, and hostile plugins that cannot take the host down.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kubewasm::runtime::{FAILURE_LINES_BURST, FAILURE_LINES_PER_SECOND};
use kubewasm_tests::host::{PluginFiles, TestHost, config_map_grant};
use kubewasm_tests::plugins::{example_bytes, test_guest_bytes};
use kubewasm_tests::{TestUser, admin_client, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(60);

fn object_meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

/// Namespaces `team-a` and `team-b`, a Secret in team-a, and ConfigMap `intruder` in
/// team-a asking the misbehave guest to read that Secret and create a ConfigMap in
/// team-b. Returns (team-a, team-b).
async fn trespass_scene(client: &kube::Client) -> anyhow::Result<(String, String)> {
    let team_a = test_namespace(client, "team-a").await?;
    let team_b = test_namespace(client, "team-b").await?;
    Api::<Secret>::namespaced(client.clone(), &team_a)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: object_meta("credentials"),
                string_data: Some(BTreeMap::from([("password".into(), "hunter2".into())])),
                ..Default::default()
            },
        )
        .await?;
    Ok((team_a, team_b))
}

async fn trespass(client: &kube::Client, team_a: &str, team_b: &str) -> anyhow::Result<()> {
    let data = [
        ("behaviour", "trespass"),
        ("secret", "credentials"),
        ("target-namespace", team_b),
    ];
    Api::<ConfigMap>::namespaced(client.clone(), team_a)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: object_meta("intruder"),
                data: Some(
                    data.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

/// The guest's record of how its two attempts ended: (secret, create).
async fn trespass_report(client: &kube::Client, team_a: &str) -> anyhow::Result<(String, String)> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), team_a);
    wait::until("the guest's report", WAIT, || async {
        Ok(api.get_opt("intruder-report").await?.and_then(|report| {
            let data = report.data?;
            Some((data.get("secret")?.clone(), data.get("create")?.clone()))
        }))
    })
    .await
}

async fn assert_team_b_untouched(client: &kube::Client, team_b: &str) -> anyhow::Result<()> {
    let created = Api::<ConfigMap>::namespaced(client.clone(), team_b)
        .get_opt("intruder-trespass")
        .await?;
    assert!(
        created.is_none(),
        "the plugin created a ConfigMap in team-b"
    );
    Ok(())
}

#[tokio::test]
async fn calls_outside_the_grant_are_refused_in_the_host() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let (team_a, team_b) = trespass_scene(&client).await?;
    // No ServiceAccount: the plugin's calls would go out with the host's own (admin)
    // identity, so only the host's check stands between it and team-b.
    let host = TestHost::start(&[PluginFiles::new(
        "trespasser",
        test_guest_bytes("misbehave"),
        config_map_grant(&team_a),
    )])
    .await?;
    trespass(&client, &team_a, &team_b).await?;

    let (secret, create) = trespass_report(&client, &team_a).await?;
    assert!(
        secret.starts_with("forbidden:") && secret.contains("secrets"),
        "{secret}"
    );
    assert!(
        create.starts_with("forbidden:") && create.contains(&team_b),
        "{create}"
    );
    assert_team_b_untouched(&client, &team_b).await?;
    for (verb, resource) in [("get", "secrets"), ("create", "configmaps")] {
        let denied = host.metric(
            "kubewasm_plugin_denied_calls_total",
            &format!("plugin=\"trespasser\",verb=\"{verb}\",resource=\"{resource}\""),
        );
        assert!(denied >= 1.0, "{verb} {resource} denied {denied} times");
    }
    // Refused calls are errors the guest handled, not failed reconciles.
    host.assert_no_reconcile_errors("trespasser");
    Ok(())
}

#[tokio::test]
async fn calls_the_grant_wrongly_allows_are_refused_by_the_api_server() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let (team_a, team_b) = trespass_scene(&client).await?;
    // The ServiceAccount may use ConfigMaps in team-a only; the grant claims more.
    let account = TestUser::with_rules(
        &client,
        &team_a,
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["*".into()],
            ..Default::default()
        }],
    )
    .await?;
    let grant = format!(
        "apiVersion: kubewasm.dev/v1\nnamespaces: [{team_a}, {team_b}]\nserviceAccount: {team_a}/{}\npermissions:\n  - apiGroups: [\"\"]\n    resources: [configmaps, secrets]\n    verbs: [\"*\"]\n",
        account.name
    );
    let host = TestHost::start(&[PluginFiles::new(
        "overgranted",
        test_guest_bytes("misbehave"),
        grant,
    )])
    .await?;
    trespass(&client, &team_a, &team_b).await?;

    let (secret, create) = trespass_report(&client, &team_a).await?;
    let username = account.username();
    for outcome in [&secret, &create] {
        assert!(
            outcome.starts_with("forbidden:") && outcome.contains(&username),
            "the API server should refuse {username}: {outcome}"
        );
    }
    assert_team_b_untouched(&client, &team_b).await?;
    assert!(
        !host
            .metrics()
            .contains("kubewasm_plugin_denied_calls_total{plugin=\"overgranted\""),
        "the host itself denied a call"
    );
    Ok(())
}

#[tokio::test]
async fn hostile_plugins_beside_the_mirror_leave_it_and_the_host_working() -> anyhow::Result<()> {
    const SOURCES: usize = 20;
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "hostile").await?;
    let hostile = ["loop", "allocate", "panic", "log-flood", "recurse"];
    let mut plugins = vec![PluginFiles::new(
        "mirror",
        example_bytes("configmap-mirror"),
        config_map_grant(&namespace),
    )];
    plugins.extend(hostile.iter().map(|behaviour| {
        PluginFiles::new(
            &format!("hostile-{behaviour}"),
            test_guest_bytes(&format!("hostile-{behaviour}")),
            config_map_grant(&namespace),
        )
    }));
    let host = TestHost::start(&plugins).await?;

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for i in 0..SOURCES {
        let mut meta = object_meta(&format!("source-{i}"));
        meta.labels = Some(BTreeMap::from([(
            "kubewasm.dev/mirror".into(),
            "true".into(),
        )]));
        api.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta,
                data: Some(BTreeMap::from([("value".into(), i.to_string())])),
                ..Default::default()
            },
        )
        .await?;
    }
    wait::until("every source mirrored", WAIT, || async {
        let mut mirrored = 0;
        for i in 0..SOURCES {
            mirrored += usize::from(api.get_opt(&format!("source-{i}-mirror")).await?.is_some());
        }
        Ok((mirrored == SOURCES).then_some(()))
    })
    .await?;

    // Each behaviour shows in its plugin's metrics. (Whether the endless loop also runs
    // past its CPU budget depends on the CPU the other tests leave it once it is
    // demoted; tests/tests/sandbox.rs counts that throttling where it is sure to happen.)
    let expectations = [
        (
            "kubewasm_plugin_calls_total",
            "plugin=\"hostile-loop\",outcome=\"deadline\"",
        ),
        (
            "kubewasm_plugin_demoted_calls_total",
            "plugin=\"hostile-loop\"",
        ),
        (
            "kubewasm_plugin_calls_total",
            "plugin=\"hostile-allocate\",outcome=\"memory\"",
        ),
        (
            "kubewasm_plugin_traps_total",
            "plugin=\"hostile-panic\",trap=\"unreachable_code_reached\"",
        ),
        (
            "kubewasm_plugin_traps_total",
            "plugin=\"hostile-recurse\",trap=\"stack_overflow\"",
        ),
        (
            "kubewasm_plugin_log_dropped_lines_total",
            "plugin=\"hostile-log-flood\"",
        ),
        ("kubewasm_plugin_breaking", "plugin=\"hostile-panic\""),
        ("kubewasm_plugin_breaking", "plugin=\"hostile-recurse\""),
        ("kubewasm_plugin_breaking", "plugin=\"hostile-log-flood\""),
    ];
    for (name, labels) in expectations {
        wait::until(&format!("{name}{{{labels}}}"), WAIT, || async {
            Ok((host.metric(name, labels) > 0.0).then_some(()))
        })
        .await?;
    }
    host.assert_no_reconcile_errors("mirror");
    assert_eq!(
        host.metric("kubewasm_plugin_demoted_calls_total", "plugin=\"mirror\""),
        0.0,
        "the mirror stays within its budget and is never demoted"
    );
    assert_eq!(
        host.metric("kubewasm_plugin_breaking", "plugin=\"mirror\""),
        0.0
    );
    assert!(
        host.manager().runtime().ready(),
        "the host is no longer ready"
    );
    Ok(())
}

#[tokio::test]
async fn a_plugin_failing_on_every_object_does_not_flood_the_host_log() -> anyhow::Result<()> {
    const OBJECTS: usize = 100;
    const PLUGIN: &str = "fails-loudly";
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "loud").await?;
    let started = Instant::now();
    let host = TestHost::start(&[PluginFiles::new(
        PLUGIN,
        test_guest_bytes("misbehave"),
        config_map_grant(&namespace),
    )])
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    for i in 0..OBJECTS {
        api.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: object_meta(&format!("failing-{i}")),
                data: Some(BTreeMap::from([("behaviour".into(), "fail".into())])),
                ..Default::default()
            },
        )
        .await?;
    }
    let failures = || {
        host.metric(
            "controller_runtime_reconcile_errors_total",
            &format!("controller=\"{PLUGIN}\""),
        )
    };
    let logged = |needles: &[&str]| {
        let plugin = format!("plugin={PLUGIN}");
        let mut needles = needles.to_vec();
        needles.push(&plugin);
        kubewasm_tests::logs::matching(&needles).len()
    };
    wait::until("every object to fail once", WAIT, || async {
        Ok((failures() >= OBJECTS as f64).then_some(()))
    })
    .await?;
    let written = logged(&["WARN", "reconcile failed"]);
    let allowed = FAILURE_LINES_BURST as f64
        + FAILURE_LINES_PER_SECOND as f64 * started.elapsed().as_secs_f64().ceil();
    assert!(
        (written as f64) <= allowed && written < OBJECTS,
        "{written} failures logged, {allowed} allowed"
    );
    // Said when it begins holding lines back, again only after writing one.
    let notices = logged(&[
        "WARN",
        "failed reconciles a second: the rest only at debug level",
    ]);
    assert!((1..=written).contains(&notices), "{notices} notices");
    // The objects fail again every 2 s; the next line written counts those held back.
    wait::until("a line saying how many were held back", WAIT, || async {
        Ok((logged(&["WARN", "reconcile failed", "held_back="]) > 0).then_some(()))
    })
    .await?;
    Ok(())
}
