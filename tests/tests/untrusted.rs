//! What a guest hands the host is untrusted, on a real API server: names that would be
//! more than one path segment are refused before any request, made-up kinds leave the
//! host's discovery cache bounded, and a plugin over its request rate is slowed and
//! counted while its neighbour is not.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kubewasm_tests::host::{PluginFiles, TestHost, config_map_grant};
use kubewasm_tests::plugins::{example_bytes, test_guest_bytes};
use kubewasm_tests::{admin_client, config_map, mirror_source, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(90);

/// The report the misbehave guest wrote for ConfigMap `ask`.
async fn report(api: &Api<ConfigMap>, ask: &str) -> anyhow::Result<BTreeMap<String, String>> {
    wait::until(&format!("{ask}'s report"), WAIT, || async {
        Ok(api
            .get_opt(&format!("{ask}-report"))
            .await?
            .and_then(|report| report.data))
    })
    .await
}

#[tokio::test]
async fn names_that_are_not_one_path_segment_are_invalid_and_never_sent() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "bad-names").await?;
    let host = TestHost::start(&[PluginFiles::new(
        "names",
        test_guest_bytes("misbehave"),
        config_map_grant(&namespace),
    )])
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &config_map("x", &[]))
        .await?;
    api.create(
        &PostParams::default(),
        &config_map("ask", &[("behaviour", "bad-names")]),
    )
    .await?;
    let outcomes = report(&api, "ask").await?;
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    for (call, outcome) in &outcomes {
        assert!(outcome.starts_with("invalid: "), "{call}: {outcome}");
    }
    // The report's own apply is the plugin's only request to the API server.
    let requests = host.metric("kubewasm_plugin_api_requests_total", "plugin=\"names\"");
    assert_eq!(requests, 1.0, "{}", host.metrics());
    Ok(())
}

#[tokio::test]
async fn made_up_kinds_leave_the_discovery_cache_bounded() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "kinds").await?;
    let host = TestHost::start(&[PluginFiles::new(
        "kinds",
        test_guest_bytes("misbehave"),
        format!(
            "{}limits: {{timeoutMs: 60000, cpuMillicores: 2000}}\n",
            config_map_grant(&namespace)
        ),
    )])
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let count = kubewasm::runtime::MAX_UNKNOWN_KINDS + 300;
    api.create(
        &PostParams::default(),
        &config_map(
            "ask",
            &[("behaviour", "kinds"), ("count", &count.to_string())],
        ),
    )
    .await?;
    let outcomes = report(&api, "ask").await?;
    assert_eq!(outcomes["not-found"], count.to_string());
    let (served, unknown) = host.manager().runtime().cached_kinds();
    // Answered from the negative cache, which stays within its bound.
    assert!(
        unknown > 0 && unknown <= kubewasm::runtime::MAX_UNKNOWN_KINDS,
        "{unknown}"
    );
    assert!(served < 10, "{served}");
    Ok(())
}

#[tokio::test]
async fn a_plugin_over_its_request_rate_is_slowed_and_counted_and_its_neighbour_is_not()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "flood").await?;
    Api::<Secret>::namespaced(client.clone(), &namespace)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let flood_grant = format!(
        "{}  - apiGroups: [\"\"]\n    resources: [secrets]\n    verbs: [get]\n\
         limits: {{timeoutMs: 30000, apiRequestsPerSecond: 1, apiRequestBurst: 2}}\n",
        config_map_grant(&namespace)
    );
    let host = TestHost::start(&[
        PluginFiles::new("flood", test_guest_bytes("misbehave"), flood_grant),
        PluginFiles::new(
            "mirror",
            example_bytes("configmap-mirror"),
            config_map_grant(&namespace),
        ),
    ])
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    api.create(
        &PostParams::default(),
        &config_map(
            "ask",
            &[("behaviour", "flood"), ("secret", "s"), ("count", "5")],
        ),
    )
    .await?;
    let source = mirror_source("demo");
    api.create(&PostParams::default(), &source).await?;

    assert_eq!(report(&api, "ask").await?["ok"], "5");
    wait::until("the neighbour's mirror", WAIT, || async {
        Ok(api.get_opt("demo-mirror").await?.map(|_| ()))
    })
    .await?;
    let throttled = |plugin: &str| {
        host.metric(
            "kubewasm_plugin_api_requests_throttled_total",
            &format!("plugin=\"{plugin}\",outcome=\"delayed\""),
        )
    };
    // 5 gets and the report at one a second past a burst of 2: four waited their turn,
    // unless a request to the local API server took a whole second (one may).
    assert!(throttled("flood") >= 3.0, "{}", host.metrics());
    let metrics = host.metrics();
    assert!(
        metrics.contains(
            "kubewasm_plugin_api_requests_throttled_total{plugin=\"mirror\",outcome=\"delayed\"} 0"
        ),
        "{metrics}"
    );
    assert_eq!(
        host.metric("kubewasm_plugin_api_requests_total", "plugin=\"flood\""),
        6.0
    );
    Ok(())
}

#[tokio::test]
async fn a_fifo_a_device_and_a_huge_file_in_the_plugins_directory_are_refused_while_the_host_serves()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "plugin-files").await?;
    let grant = config_map_grant(&namespace);
    let host = TestHost::start(&[PluginFiles::new(
        "mirror",
        example_bytes("configmap-mirror"),
        grant.clone(),
    )])
    .await?;
    let dir = host.dir().to_path_buf();
    // A FIFO no one writes to, a grant that is /dev/zero, and a sparse file one byte
    // over the component limit.
    let fifo = std::ffi::CString::new(dir.join("fifo.wasm").to_str().unwrap())?;
    // SAFETY: a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::write(dir.join("fifo.yaml"), &grant)?;
    std::fs::write(dir.join("zero.wasm"), example_bytes("configmap-mirror"))?;
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml"))?;
    std::fs::File::create(dir.join("huge.wasm"))?
        .set_len(kubewasm::plugins::DEFAULT_MAX_COMPONENT_BYTES + 1)?;
    std::fs::write(dir.join("huge.yaml"), &grant)?;

    let plugins = host.manager().plugins();
    for (name, why) in [
        ("fifo", "FIFO"),
        ("zero", "character device"),
        ("huge", "over the limit of 67108864"),
    ] {
        let refused = tokio::time::timeout(Duration::from_secs(30), plugins.load(name))
            .await
            .map_err(|_| anyhow::anyhow!("loading {name} blocked"))?
            .unwrap_err()
            .to_string();
        assert!(refused.contains(why), "{name}: {refused}");
    }
    assert_eq!(
        host.manager().runtime().plugin_names().await,
        vec!["mirror".to_string()]
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let source = mirror_source("after");
    api.create(&PostParams::default(), &source).await?;
    wait::until(
        "a mirror made after the hostile files came",
        WAIT,
        || async { Ok(api.get_opt("after-mirror").await?.map(|_| ())) },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_list_the_api_server_answers_is_paged_and_one_over_the_cap_is_an_error()
-> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "long-list").await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let count = kubewasm::runtime::MAX_LIST_OBJECTS + 1;
    futures::stream::iter(0..count)
        .map(|i| {
            let secrets = secrets.clone();
            async move {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(format!("s-{i}")),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &secret).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let grant = format!(
        "{}  - apiGroups: [\"\"]\n    resources: [secrets]\n    verbs: [list]\n\
         limits: {{timeoutMs: 60000}}\n",
        config_map_grant(&namespace)
    );
    let host = TestHost::start(&[PluginFiles::new(
        "lister",
        test_guest_bytes("misbehave"),
        grant,
    )])
    .await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    api.create(
        &PostParams::default(),
        &config_map("ask", &[("behaviour", "list-secrets")]),
    )
    .await?;
    let outcome = &report(&api, "ask").await?["list"];
    assert!(
        outcome.starts_with("unavailable: ") && outcome.contains("more than 5000 objects"),
        "{outcome}"
    );
    // Pages of 500 until the cap was passed, and the report.
    let requests = host.metric("kubewasm_plugin_api_requests_total", "plugin=\"lister\"");
    assert_eq!(requests, (count / 500 + 1 + 1) as f64);
    Ok(())
}
