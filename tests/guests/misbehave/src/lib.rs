//! A test guest that does, on request, what a plugin must not get away with.
//!
//! It watches ConfigMaps, or the kind `MISBEHAVE_KIND` in `MISBEHAVE_API_VERSION` when
//! built with them; the behaviour comes from the object's `data.behaviour`, or, when
//! absent, from `MISBEHAVE_DEFAULT` at build time (so one source builds hostile plugins
//! that misbehave on every object).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use kubewasm_guest::k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kubewasm_guest::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubewasm_guest::{Action, Error, Object, Reconciler, Result, events, kube, log};
use serde::Deserialize;

/// Just enough of a ConfigMap.
#[derive(Deserialize)]
pub struct Subject {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

impl Object for Subject {
    const API_VERSION: &'static str = match option_env!("MISBEHAVE_API_VERSION") {
        Some(api_version) => api_version,
        None => "v1",
    };
    const KIND: &'static str = match option_env!("MISBEHAVE_KIND") {
        Some(kind) => kind,
        None => "ConfigMap",
    };
}

impl Subject {
    fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }
}

/// The plugin.
pub struct Misbehave;

/// What `remember` finds left over from earlier calls: a counter in the data segment
/// and a list on the heap. Every call gets a fresh instance, so both start empty.
static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static HEAP: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn remember() -> Result<Action> {
    let calls = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let mut heap = HEAP.lock().map_err(|_| Error::msg("poisoned"))?;
    heap.push("x".repeat(100_000));
    Err(Error::msg(format!("calls {calls}, heap {}", heap.len())))
}

/// Recurses until the stack runs out (`depth` never reaches `u64::MAX` in practice).
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    1 + recurse(black_box(depth + 1))
}

fn behave(subject: &Subject) -> Result<Action> {
    let behaviour = subject
        .get("behaviour")
        .or(option_env!("MISBEHAVE_DEFAULT"))
        .unwrap_or("ok");
    match behaviour {
        "ok" => Ok(Action::AwaitChange),
        "loop" => loop {
            black_box(());
        },
        "allocate" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                black_box(&hoard);
            }
        }
        "panic" => panic!("deliberate panic"),
        "recurse" => Ok(Action::RequeueAfter(Duration::from_millis(recurse(0)))),
        "open-file" => match std::fs::read("/etc/passwd") {
            Ok(_) => Ok(Action::Default),
            Err(err) => Err(Error::msg(format!("open-file failed: {err}"))),
        },
        "socket" => {
            let address = subject.get("address").unwrap_or("127.0.0.1:80");
            match std::net::TcpStream::connect(address) {
                Ok(_) => Ok(Action::Default),
                Err(err) => Err(Error::msg(format!("socket failed: {err}"))),
            }
        }
        "environment" => {
            let vars = std::env::vars().count();
            let args = std::env::args().count();
            Err(Error::msg(format!("environment: {vars} vars, {args} args")))
        }
        "remember" => remember(),
        "requeue-zero" => Ok(Action::RequeueAfter(Duration::ZERO)),
        "requeue" => Ok(Action::RequeueAfter(Duration::from_millis(1500))),
        "fail" => Err(Error::msg("failing as asked").retry_after(Duration::from_secs(2))),
        "log-flood" => {
            let line = "x".repeat(1023);
            let mut out = std::io::stdout().lock();
            for _ in 0..10 * 1024 {
                let _ = writeln!(out, "{line}");
            }
            Ok(Action::AwaitChange)
        }
        "log" => {
            log::info("hello from the guest");
            println!("hello on stdout");
            Ok(Action::AwaitChange)
        }
        "event" => {
            events::warning("Misbehaving", "asked to publish an event");
            Ok(Action::AwaitChange)
        }
        "get" => {
            let namespace = subject.get("namespace");
            let name = subject.get("name").unwrap_or("missing");
            match kube::get::<ConfigMap>(namespace, name) {
                Ok(found) => Err(Error::msg(format!(
                    "get found {}",
                    found.metadata.name.unwrap_or_default()
                ))),
                Err(err) => Err(Error::msg(format!("get failed: {err:?}"))),
            }
        }
        "fail-times" => fail_times(subject),
        "trespass" => trespass(subject),
        "copy" => copy(subject),
        "bad-names" => bad_names(subject),
        "kinds" => kinds(subject),
        "flood" => flood(subject),
        "list-secrets" => {
            let listed = kube::list::<Secret>(subject.metadata.namespace.as_deref(), None);
            let outcome = match &listed {
                Ok(secrets) => secrets.len().to_string(),
                Err(_) => outcome(&listed),
            };
            report(subject, BTreeMap::from([("list".into(), outcome)]))?;
            Ok(Action::AwaitChange)
        }
        "read-report" => read_report(subject),
        other => Err(Error::msg(format!("unknown behaviour {other:?}"))),
    }
}

/// Tries to read Secret `data.secret` in its own namespace and to create a ConfigMap in
/// `data.target-namespace`, then records how each attempt ended in ConfigMap
/// `<name>-report` (`ok`, or the error kind and message), and succeeds: a guest that is
/// refused handles it like any other error.
fn trespass(subject: &Subject) -> Result<Action> {
    let namespace = subject.metadata.namespace.as_deref();
    let name = subject.metadata.name.as_deref().unwrap_or("");
    let secret = kube::get::<Secret>(namespace, subject.get("secret").unwrap_or("secret"));
    let created = kube::create(&ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("{name}-trespass")),
            namespace: subject.get("target-namespace").map(str::to_string),
            ..Default::default()
        },
        ..Default::default()
    });
    let report = BTreeMap::from([
        ("secret".to_string(), outcome(&secret)),
        ("create".to_string(), outcome(&created)),
    ]);
    kube::apply(&ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("{name}-report")),
            namespace: namespace.map(str::to_string),
            ..Default::default()
        },
        data: Some(report),
        ..Default::default()
    })?;
    Ok(Action::AwaitChange)
}

/// Copies the object's data into ConfigMap `<name>-copy` beside it: what a plugin that
/// watches a kind it was not granted would do with it.
fn copy(subject: &Subject) -> Result<Action> {
    write_beside(subject, "copy", subject.data.clone())?;
    Ok(Action::AwaitChange)
}

/// Records `outcomes` in ConfigMap `<name>-report` beside `subject`.
fn report(subject: &Subject, outcomes: BTreeMap<String, String>) -> Result<()> {
    write_beside(subject, "report", outcomes)
}

/// Applies ConfigMap `<name>-<suffix>` holding `data` in `subject`'s namespace.
fn write_beside(subject: &Subject, suffix: &str, data: BTreeMap<String, String>) -> Result<()> {
    kube::apply(&ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{suffix}",
                subject.metadata.name.as_deref().unwrap_or("")
            )),
            namespace: subject.metadata.namespace.clone(),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    })?;
    Ok(())
}

/// Reads through the raw import with names that are not one path segment, a namespace
/// and an apiVersion that are not names, and records how each ended (key: its index).
fn bad_names(subject: &Subject) -> Result<Action> {
    use kubewasm_guest::bindings::kubewasm::controller::{kube as raw, types::ObjectRef};
    let namespace = subject.metadata.namespace.clone();
    let target = |api_version: &str, namespace: Option<String>, name: &str| ObjectRef {
        api_version: api_version.to_string(),
        kind: "ConfigMap".to_string(),
        namespace,
        name: name.to_string(),
    };
    let targets = [
        target("v1", namespace.clone(), "x/status"),
        target("v1", namespace.clone(), ".."),
        target("v1", namespace.clone(), "a?watch=true"),
        target("v1", namespace.clone(), "%2e%2e"),
        target("v1", Some("a/b".into()), "x"),
        target("v1?x=1", namespace.clone(), "x"),
    ];
    let mut outcomes: BTreeMap<String, String> = targets
        .iter()
        .enumerate()
        .map(|(index, target)| (index.to_string(), outcome(&raw::get(target))))
        .collect();
    outcomes.insert(
        "list".into(),
        outcome(&raw::list("v1", "ConfigMap", Some("a/b"), None)),
    );
    outcomes.insert(
        "delete".into(),
        outcome(&raw::delete(&target("v1", namespace, "../x"))),
    );
    report(subject, outcomes)?;
    Ok(Action::AwaitChange)
}

/// Gets `data.count` objects of as many distinct made-up kinds (`g<i>.example.com/v1`),
/// and records how many ended not-found.
fn kinds(subject: &Subject) -> Result<Action> {
    use kubewasm_guest::bindings::kubewasm::controller::{kube as raw, types::ObjectRef};
    let count: u32 = subject.get("count").unwrap_or("10").parse()?;
    let not_found = (0..count)
        .filter(|i| {
            matches!(
                raw::get(&ObjectRef {
                    api_version: format!("g{i}.example.com/v1"),
                    kind: "Thing".into(),
                    namespace: subject.metadata.namespace.clone(),
                    name: "x".into(),
                }),
                Err(kube::Error::NotFound(_))
            )
        })
        .count();
    report(
        subject,
        BTreeMap::from([("not-found".into(), not_found.to_string())]),
    )?;
    Ok(Action::AwaitChange)
}

/// Gets Secret `data.secret` `data.count` times, each a request to the API server, and
/// records how many succeeded.
fn flood(subject: &Subject) -> Result<Action> {
    let count: u32 = subject.get("count").unwrap_or("10").parse()?;
    let namespace = subject.metadata.namespace.as_deref();
    let secret = subject.get("secret").unwrap_or("secret");
    let ok = (0..count)
        .filter(|_| kube::get::<Secret>(namespace, secret).is_ok())
        .count();
    report(subject, BTreeMap::from([("ok".into(), ok.to_string())]))?;
    Ok(Action::AwaitChange)
}

/// Gets ConfigMap `data.name` in its own namespace, records how that ended in
/// ConfigMap `<name>-report` (key `get`), and asks to be called again in a second.
fn read_report(subject: &Subject) -> Result<Action> {
    let namespace = subject.metadata.namespace.as_deref();
    let read = kube::get::<ConfigMap>(namespace, subject.get("name").unwrap_or("missing"));
    report(
        subject,
        BTreeMap::from([("get".to_string(), outcome(&read))]),
    )?;
    Ok(Action::RequeueAfter(Duration::from_secs(1)))
}

fn outcome<T>(result: &kube::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(kube::Error::Forbidden(message)) => format!("forbidden: {message}"),
        Err(kube::Error::NotFound(message)) => format!("not-found: {message}"),
        Err(kube::Error::Invalid(message)) => format!("invalid: {message}"),
        Err(kube::Error::Unavailable(message)) => format!("unavailable: {message}"),
        Err(err) => format!("other: {err:?}"),
    }
}

/// Fails until it has been called `data.times` times, counting calls in ConfigMap
/// `<name>-attempts` (a fresh instance remembers nothing).
fn fail_times(subject: &Subject) -> Result<Action> {
    let times: u32 = subject.get("times").unwrap_or("1").parse()?;
    let namespace = subject.metadata.namespace.as_deref();
    let counter = format!(
        "{}-attempts",
        subject.metadata.name.as_deref().unwrap_or("")
    );
    let attempts: u32 = kube::get_opt::<ConfigMap>(namespace, &counter)?
        .and_then(|cm| cm.data?.get("count")?.parse().ok())
        .unwrap_or(0);
    kube::apply(&ConfigMap {
        metadata: ObjectMeta {
            name: Some(counter),
            namespace: namespace.map(str::to_string),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "count".to_string(),
            (attempts + 1).to_string(),
        )])),
        ..Default::default()
    })?;
    if attempts < times {
        Err(Error::msg(format!(
            "failing attempt {} of {times}",
            attempts + 1
        )))
    } else {
        Ok(Action::AwaitChange)
    }
}

impl Reconciler for Misbehave {
    type Resource = Subject;

    fn apply(subject: Subject) -> Result<Action> {
        behave(&subject)
    }

    fn cleanup(subject: Subject) -> Result<Action> {
        behave(&subject)
    }
}

kubewasm_guest::export!(Misbehave);
