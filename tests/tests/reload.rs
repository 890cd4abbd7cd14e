//! Hot reload on a real API server: a replaced plugin converges every object with no
//! failed or lost reconcile, broken files never replace the running version, removed
//! plugins stop and their metric series go, directories published by swapping a symlink
//! are followed, a plugin's lifecycle shows as Events on the host's Pod, a plugin
//! compiling holds up no other plugin's change, and draining retires a plugin cleanly.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kubewasm::ops::lifecycle_events::HostPod;
use kubewasm_tests::components::dummy_component;
use kubewasm_tests::host::{PluginFiles, TestHost, config_map_grant, write_plugin};
use kubewasm_tests::plugins::{example_bytes, test_guest_bytes};
use kubewasm_tests::{admin_client, logs, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(90);

fn labelled(name: &str, label: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(label.to_string(), "true".to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("n".to_string(), "0".to_string())])),
        ..Default::default()
    }
}

async fn create_all(api: &Api<ConfigMap>, names: &[String], label: &str) -> anyhow::Result<()> {
    futures::stream::iter(names.iter().map(|name| {
        let api = api.clone();
        let object = labelled(name, label);
        async move {
            api.create(&PostParams::default(), &object)
                .await
                .map(|_| ())
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// Waits until every stamped object carries `version`.
async fn all_stamped(api: &Api<ConfigMap>, count: usize, version: &str) -> anyhow::Result<()> {
    wait::until(
        &format!("{count} objects stamped {version}"),
        WAIT,
        || async {
            let stamped = api
                .list(&ListParams::default().labels("kubewasm.dev/stamp=true"))
                .await?
                .items
                .iter()
                .filter(|cm| {
                    cm.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("kubewasm.dev/version"))
                        .map(String::as_str)
                        == Some(version)
                })
                .count();
            Ok((stamped == count).then_some(()))
        },
    )
    .await
}

/// Writes `bytes` over the plugin file, as `cp` does (truncate, then write).
fn overwrite(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("writing the plugin file");
}

async fn reloads(host: &TestHost, result: &str, at_least: f64) -> anyhow::Result<()> {
    let labels = format!("plugin=\"stamp\",result=\"{result}\"");
    wait::until(
        &format!("{at_least} reloads with result {result}"),
        WAIT,
        || async {
            Ok((host.metric("kubewasm_plugin_reloads_total", &labels) >= at_least).then_some(()))
        },
    )
    .await
}

fn assert_nothing_failed(host: &TestHost) {
    host.assert_no_reconcile_errors("stamp");
    for outcome in kubewasm::ops::metrics::CALL_OUTCOMES {
        let labels = format!("plugin=\"stamp\",outcome=\"{outcome}\"");
        let calls = host.metric("kubewasm_plugin_calls_total", &labels);
        assert!(
            outcome == "ok" || calls == 0.0,
            "{calls} calls ended {outcome}"
        );
    }
}

/// A host running stamp v1 as plugin `stamp` in a fresh namespace, and that namespace's
/// ConfigMaps.
async fn stamp_v1_host(prefix: &str) -> anyhow::Result<(Api<ConfigMap>, TestHost)> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, prefix).await?;
    let host = TestHost::start(&[PluginFiles::new(
        "stamp",
        test_guest_bytes("stamp-v1"),
        config_map_grant(&namespace),
    )])
    .await?;
    Ok((Api::namespaced(client, &namespace), host))
}

#[tokio::test]
async fn a_replaced_plugin_converges_every_object_with_no_reconcile_failed_or_lost()
-> anyhow::Result<()> {
    let (api, host) = stamp_v1_host("reload").await?;
    let names: Vec<String> = (0..200).map(|i| format!("object-{i:03}")).collect();
    create_all(&api, &names, "kubewasm.dev/stamp").await?;
    all_stamped(&api, 200, "v1").await?;

    overwrite(&host.wasm_path("stamp"), &test_guest_bytes("stamp-v2"));
    all_stamped(&api, 200, "v2").await?;
    assert_eq!(
        host.metric(
            "kubewasm_plugin_reloads_total",
            "plugin=\"stamp\",result=\"ok\""
        ),
        1.0
    );
    assert_nothing_failed(&host);

    // Ten reloads in a row while the objects keep changing.
    let load = {
        let api = api.clone();
        let names = names.clone();
        tokio::spawn(async move {
            for round in 0.. {
                for name in names.iter().step_by(7) {
                    let patch = serde_json::json!({"data": {"n": round.to_string()}});
                    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await?;
                }
            }
            anyhow::Ok(())
        })
    };
    for reload in 0..10 {
        let version = if reload % 2 == 0 {
            "stamp-v1"
        } else {
            "stamp-v2"
        };
        overwrite(&host.wasm_path("stamp"), &test_guest_bytes(version));
        reloads(&host, "ok", 2.0 + reload as f64).await?;
    }
    load.abort();
    all_stamped(&api, 200, "v2").await?;
    assert_eq!(
        host.metric(
            "kubewasm_plugin_reloads_total",
            "plugin=\"stamp\",result=\"ok\""
        ),
        11.0
    );
    assert_eq!(
        host.metric(
            "kubewasm_plugin_reloads_total",
            "plugin=\"stamp\",result=\"error\""
        ),
        0.0
    );
    assert_nothing_failed(&host);
    Ok(())
}

#[tokio::test]
async fn broken_files_never_replace_the_running_version() -> anyhow::Result<()> {
    let (api, host) = stamp_v1_host("broken").await?;
    let path = host.wasm_path("stamp");
    let v2 = test_guest_bytes("stamp-v2");
    let other_world = dummy_component(
        &[(
            "other.wit".into(),
            "package test:other; world other { export run: func(); }".into(),
        )],
        "other",
    )?;
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let broken: [(&str, Vec<u8>, &str); 3] = [
        (
            "truncated",
            v2[..v2.len() / 2].to_vec(),
            "malformed or truncated",
        ),
        ("random bytes", random, "not a WebAssembly component"),
        ("another world", other_world, "does not implement world"),
    ];
    for (round, (what, bytes, reason)) in broken.into_iter().enumerate() {
        overwrite(&path, &bytes);
        wait::until(
            &format!("the {what} failure logged with {reason:?}"),
            WAIT,
            || async {
                Ok((!logs::matching(&["reload failed", "stamp", reason]).is_empty()).then_some(()))
            },
        )
        .await?;
        assert_eq!(
            host.metric(
                "kubewasm_plugin_reloads_total",
                "plugin=\"stamp\",result=\"error\""
            ),
            round as f64 + 1.0
        );
        // The old version still serves: a new object gets stamped v1.
        let name = format!("after-{round}");
        create_all(&api, std::slice::from_ref(&name), "kubewasm.dev/stamp").await?;
        all_stamped(&api, round + 1, "v1").await?;
    }

    // Removed and written again within the grace period: the plugin never stops.
    std::fs::remove_file(&path)?;
    tokio::time::sleep(Duration::from_millis(200)).await; // the editor's pause
    overwrite(&path, &test_guest_bytes("stamp-v1"));
    create_all(&api, &["after-rewrite".to_string()], "kubewasm.dev/stamp").await?;
    all_stamped(&api, 4, "v1").await?;
    tokio::time::sleep(Duration::from_secs(3)).await; // past the removal grace
    assert_eq!(
        host.manager().runtime().plugin_names().await,
        vec!["stamp".to_string()]
    );
    assert!(logs::matching(&["plugin files removed", "stamp"]).is_empty());

    // And the next good file is taken.
    overwrite(&path, &v2);
    all_stamped(&api, 4, "v2").await?;
    assert_eq!(
        host.metric(
            "kubewasm_plugin_reloads_total",
            "plugin=\"stamp\",result=\"error\""
        ),
        3.0
    );
    Ok(())
}

#[tokio::test]
async fn removed_plugins_stop_and_new_ones_start() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "add-remove").await?;
    let host = TestHost::start(&[]).await?;
    write_plugin(
        host.dir(),
        &PluginFiles::new(
            "stamp",
            test_guest_bytes("stamp-v1"),
            config_map_grant(&namespace),
        ),
    )?;
    let runtime = host.manager().runtime().clone();
    wait::until("the new plugin to start", WAIT, || async {
        Ok((runtime.plugin_names().await == ["stamp"]).then_some(()))
    })
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    create_all(&api, &["subject".to_string()], "kubewasm.dev/stamp").await?;
    wait::until("the plugin's first call", WAIT, || async {
        let calls = host.metric(
            "kubewasm_plugin_calls_total",
            "plugin=\"stamp\",outcome=\"ok\"",
        );
        Ok((calls >= 1.0).then_some(()))
    })
    .await?;
    assert!(!series_of("stamp", &host.metrics()).is_empty());
    // A plugin that never starts exports nothing.
    write_plugin(
        host.dir(),
        &PluginFiles::new(
            "never-starts",
            b"not a component".to_vec(),
            config_map_grant(&namespace),
        ),
    )?;
    wait::until("the broken plugin's failure", WAIT, || async {
        Ok((!logs::matching(&["not started", "never-starts"]).is_empty()).then_some(()))
    })
    .await?;
    assert_eq!(
        series_of("never-starts", &host.metrics()),
        Vec::<String>::new()
    );

    std::fs::remove_file(host.wasm_path("stamp"))?;
    wait::until("the removed plugin to stop", WAIT, || async {
        Ok(runtime.plugin_names().await.is_empty().then_some(()))
    })
    .await?;
    assert_eq!(host.metric("kubewasm_watches", ""), 0.0);
    // A host whose plugins come and go keeps exporting none of theirs.
    wait::until("the removed plugin's series to go", WAIT, || async {
        let left = series_of("stamp", &host.metrics());
        Ok(left.is_empty().then_some(()))
    })
    .await?;
    Ok(())
}

/// The samples in `metrics` of plugin `name`'s series.
fn series_of(name: &str, metrics: &str) -> Vec<String> {
    let labels = [
        format!("plugin=\"{name}\""),
        format!("controller=\"{name}\""),
        format!("name=\"{name}\""),
    ];
    metrics
        .lines()
        .filter(|line| labels.iter().any(|label| line.contains(label.as_str())))
        .map(str::to_string)
        .collect()
}

/// Publishes `plugin` into a new directory `version` of `dir` and renames a new
/// symlink `link` to it over the old, as a ConfigMap volume (`..data`) and a syncing
/// sidecar (its checkout link) publish new files.
fn publish_by_symlink(
    dir: &Path,
    version: &str,
    link: &str,
    plugin: &PluginFiles,
) -> anyhow::Result<()> {
    std::fs::create_dir(dir.join(version))?;
    write_plugin(&dir.join(version), plugin)?;
    let new_link = dir.join(format!("{link}_tmp"));
    std::os::unix::fs::symlink(version, &new_link)?;
    std::fs::rename(new_link, dir.join(link))?;
    Ok(())
}

/// Plugin `stamp` as `version` (`stamp-v1`, `stamp-v2`) granted `namespace`.
fn stamp(version: &str, namespace: &str) -> PluginFiles {
    PluginFiles::new(
        "stamp",
        test_guest_bytes(version),
        config_map_grant(namespace),
    )
}

/// A fresh namespace's ConfigMaps and its name, holding 20 objects for `stamp`.
async fn stamp_objects(prefix: &str) -> anyhow::Result<(Api<ConfigMap>, String)> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, prefix).await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let names: Vec<String> = (0..20).map(|i| format!("object-{i:02}")).collect();
    create_all(&api, &names, "kubewasm.dev/stamp").await?;
    Ok((api, namespace))
}

#[tokio::test]
async fn a_plugin_in_a_volume_updated_like_a_config_map_reloads() -> anyhow::Result<()> {
    let (api, namespace) = stamp_objects("volume").await?;
    let host = TestHost::start(&[]).await?;
    let dir = host.dir();
    publish_by_symlink(dir, "..v1", "..data", &stamp("stamp-v1", &namespace))?;
    for file in ["stamp.wasm", "stamp.yaml"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file))?;
    }
    all_stamped(&api, 20, "v1").await?;

    // The update writes none of the files the plugin's symlinks name.
    publish_by_symlink(dir, "..v2", "..data", &stamp("stamp-v2", &namespace))?;
    std::fs::remove_dir_all(dir.join("..v1"))?;
    all_stamped(&api, 20, "v2").await?;
    reloads(&host, "ok", 1.0).await?;
    assert_nothing_failed(&host);
    Ok(())
}

#[tokio::test]
async fn a_plugins_directory_behind_a_swapped_symlink_is_followed() -> anyhow::Result<()> {
    let (api, namespace) = stamp_objects("swapped").await?;
    let root = tempfile::tempdir()?;
    let revisions = root.path().to_path_buf();
    publish_by_symlink(
        &revisions,
        "rev1",
        "current",
        &stamp("stamp-v1", &namespace),
    )?;
    let host = TestHost::start_at(root, revisions.join("current")).await?;
    all_stamped(&api, 20, "v1").await?;

    publish_by_symlink(
        &revisions,
        "rev2",
        "current",
        &stamp("stamp-v2", &namespace),
    )?;
    std::fs::remove_dir_all(revisions.join("rev1"))?;
    all_stamped(&api, 20, "v2").await?;
    // The new revision's directory is the one watched now.
    overwrite(&host.wasm_path("stamp"), &test_guest_bytes("stamp-v1"));
    all_stamped(&api, 20, "v1").await?;
    reloads(&host, "ok", 2.0).await?;
    assert_eq!(host.manager().runtime().plugin_names().await, ["stamp"]);
    assert_nothing_failed(&host);
    Ok(())
}

/// Waits for the Event `reason` regarding Pod `pod`.
async fn pod_event(events: &Api<Event>, pod: &str, reason: &str) -> anyhow::Result<Event> {
    wait::until(&format!("a {reason} Event on Pod {pod}"), WAIT, || async {
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|event| {
                event.reason.as_deref() == Some(reason)
                    && event.regarding.as_ref().is_some_and(|regarding| {
                        regarding.kind.as_deref() == Some("Pod")
                            && regarding.name.as_deref() == Some(pod)
                    })
            }))
    })
    .await
}

#[tokio::test]
async fn a_plugins_lifecycle_is_recorded_as_events_on_the_hosts_pod() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "lifecycle").await?;
    let pod = HostPod {
        namespace: namespace.clone(),
        name: "kubewasm-0".into(),
    };
    // A name of its own, as the log lines of other tests' `stamp` are matched.
    let plugin = PluginFiles::new(
        "lifecycle",
        test_guest_bytes("stamp-v1"),
        config_map_grant(&namespace),
    );
    let host = TestHost::start_in_pod(&[plugin], pod).await?;
    let events: Api<Event> = Api::namespaced(client, &namespace);
    let note = |event: Event| event.note.unwrap_or_default();

    let started = pod_event(&events, "kubewasm-0", "PluginStarted").await?;
    assert!(
        note(started).starts_with("lifecycle: started, digest sha256:"),
        "the note names the plugin and its digest"
    );
    overwrite(&host.wasm_path("lifecycle"), &test_guest_bytes("stamp-v2"));
    pod_event(&events, "kubewasm-0", "PluginReloaded").await?;
    overwrite(&host.wasm_path("lifecycle"), b"not a component");
    let failed = pod_event(&events, "kubewasm-0", "PluginLoadFailed").await?;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    let failed = note(failed);
    assert!(
        failed.contains("the running version keeps serving"),
        "{failed}"
    );
    std::fs::remove_file(host.wasm_path("lifecycle"))?;
    pod_event(&events, "kubewasm-0", "PluginStopped").await?;
    Ok(())
}

#[tokio::test]
async fn a_plugin_compiling_holds_up_no_other_plugins_change() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "compiling").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    // No compile cache, so that the large plugin below is compiled, not read back.
    let config = kubewasm::sandbox::SandboxConfig {
        cache_dir: None,
        ..kubewasm_tests::sandbox_config()
    };
    let host = TestHost::start_with(
        &[PluginFiles::new(
            "stamp",
            test_guest_bytes("stamp-v1"),
            config_map_grant(&namespace),
        )],
        config,
    )
    .await?;
    create_all(&api, &["object".to_string()], "kubewasm.dev/stamp").await?;
    all_stamped(&api, 1, "v1").await?;

    // A new plugin that takes seconds to compile (componentize-py's interpreter), then
    // a change to the running one: its events come no earlier than the new plugin's.
    write_plugin(
        host.dir(),
        &PluginFiles::new(
            "python",
            example_bytes("configmap-mirror-py"),
            config_map_grant(&namespace),
        ),
    )?;
    overwrite(&host.wasm_path("stamp"), &test_guest_bytes("stamp-v2"));
    all_stamped(&api, 1, "v2").await?;
    let plugins = host.manager().plugins();
    assert!(
        !plugins.is_loaded("python"),
        "the reload of stamp waited for the python plugin's compile"
    );
    wait::until("the python plugin to start", WAIT, || async {
        Ok(plugins.is_loaded("python").then_some(()))
    })
    .await?;
    assert_eq!(
        host.metric(
            "kubewasm_plugin_reloads_total",
            "plugin=\"stamp\",result=\"ok\""
        ),
        1.0
    );
    Ok(())
}

#[tokio::test]
async fn draining_runs_cleanup_everywhere_and_removes_the_finalizer() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "drain").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let grant = config_map_grant(&namespace);
    let host = TestHost::start(&[PluginFiles::new(
        "mirror",
        example_bytes("configmap-mirror"),
        grant.clone(),
    )])
    .await?;
    let names: Vec<String> = (0..10).map(|i| format!("kept-{i}")).collect();
    create_all(&api, &names, "kubewasm.dev/mirror").await?;
    wait::until("10 mirrors", WAIT, || async {
        let list = api.list(&ListParams::default()).await?.items;
        Ok((list.len() == 20).then_some(()))
    })
    .await?;

    std::fs::write(
        host.dir().join("mirror.yaml"),
        format!("{grant}drain: true\n"),
    )?;
    wait::until(
        "mirrors deleted and finalizers removed, sources kept",
        WAIT,
        || async {
            let list = api.list(&ListParams::default()).await?.items;
            let drained = list.len() == 10
                && list.iter().all(|cm| {
                    cm.metadata.finalizers.as_ref().is_none_or(|f| f.is_empty())
                        && !cm
                            .metadata
                            .name
                            .as_deref()
                            .unwrap_or("")
                            .ends_with("-mirror")
                });
            Ok(drained.then_some(()))
        },
    )
    .await?;
    // Retired: deleting a source no longer waits for anything.
    api.delete("kept-0", &DeleteParams::default()).await?;
    wait::until("kept-0 gone", WAIT, || async {
        Ok(api.get_opt("kept-0").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}
