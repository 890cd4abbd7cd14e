use super::*;

const EXAMPLE: &str = "\
apiVersion: kubewasm.dev/v1
namespaces: [team-a, team-b]
serviceAccount: team-a/mirror
finalizers: [kubewasm.dev/mirror]
permissions:
  - apiGroups: [\"\"]
    resources: [configmaps]
    verbs: [get, list, watch, create, update, patch, delete]
limits: {memoryMiB: 32, timeoutMs: 500, concurrency: 2}
";

#[test]
fn the_documented_grant_parses() {
    let grant = Grant::parse(EXAMPLE, "mirror.yaml").unwrap();
    assert!(grant.allows_namespace("team-b"));
    assert!(!grant.allows_namespace("team-c"));
    assert_eq!(
        grant.service_account.as_ref().unwrap().username(),
        "system:serviceaccount:team-a:mirror"
    );
    assert!(grant.allows("", "configmaps", Verb::Patch, Some("x")));
    assert!(!grant.allows("", "secrets", Verb::Get, Some("x")));
    assert!(!grant.allows("apps", "configmaps", Verb::Get, None));
    assert!(grant.allows_finalizer("kubewasm.dev/mirror"));
    assert!(!grant.allows_finalizer("other.dev/mirror"));
    assert_eq!(grant.limits.sandbox().memory_bytes, 32 << 20);
    assert_eq!(grant.limits.concurrency, 2);
    assert_eq!(grant.digest, None);
}

#[test]
fn defaults_apply_to_what_is_left_out() {
    let grant = Grant::parse("apiVersion: kubewasm.dev/v1\nnamespaces: [a]\n", "g.yaml").unwrap();
    assert_eq!(grant.limits, GrantLimits::default());
    assert_eq!(grant.limits.concurrency, 4);
    assert!(grant.permissions.is_empty() && grant.finalizers.is_empty());
    assert_eq!(grant.service_account, None);
    assert!(!grant.drain);
}

#[test]
fn cluster_wide_is_said_explicitly() {
    let grant = Grant::parse(
        "apiVersion: kubewasm.dev/v1\nnamespaces: [\"*\"]\n",
        "g.yaml",
    )
    .unwrap();
    assert_eq!(grant.namespaces, Namespaces::All);
    assert!(!grant.is_namespaced());
    assert!(grant.allows_namespace("anything"));
}

#[test]
fn a_digest_pins_one_component() {
    let hex = "ab".repeat(32);
    let grant = Grant::parse(
        &format!("apiVersion: kubewasm.dev/v1\nnamespaces: [a]\ndigest: sha256:{hex}\n"),
        "g.yaml",
    )
    .unwrap();
    assert_eq!(grant.digest.as_deref(), Some(hex.as_str()));
}

#[test]
fn grants_that_leave_out_what_matters_are_refused_with_the_fix() {
    let v1 = "apiVersion: kubewasm.dev/v1\n";
    let cases = [
        ("".to_string(), "the grant is empty"),
        ("   \n# nothing\n".to_string(), "the grant is empty"),
        ("{}\n".to_string(), "write `apiVersion: kubewasm.dev/v1`"),
        (
            "namespaces: [a]\npermissions: []\n".to_string(),
            "docs/grants.md, \"Migrating\"",
        ),
        (
            "apiVersion: kubewasm.dev/v2\nnamespaces: [a]\n".to_string(),
            "use kubewasm.dev/v1",
        ),
        (v1.to_string(), "namespaces: [\"*\"]"),
        (
            format!("{v1}permissions: []\n"),
            "no namespaces: list those the plugin may act in",
        ),
        (format!("{v1}namespaces: []\n"), "namespaces is empty"),
        (format!("{v1}namespaces: [\"*\", a]\n"), "stands alone"),
        (
            format!("{v1}namespaces: [a]\ndigest: 1234\n"),
            "`sha256:` and 64",
        ),
        (
            format!("{v1}namespaces: [a]\nfinalizers: [mirror]\n"),
            "domain-qualified",
        ),
    ];
    for (text, reason) in cases {
        match Grant::parse(&text, "bad.yaml") {
            Err(GrantError::Invalid {
                file, reason: r, ..
            }) => {
                assert_eq!(file, "bad.yaml");
                assert!(r.contains(reason), "{text:?}: {r}");
            }
            other => panic!("{text:?} should be refused, got {other:?}"),
        }
    }
}

#[test]
fn invalid_grants_name_file_line_and_reason() {
    let cases = [
        ("namespaces: [Team_A]\n", 2, "not a namespace name"),
        (
            "namespaces: [a]\npermissions:\n  - apiGroups: [\"\"]\n    resources: [pods]\n    verbs: [fly]\n",
            6,
            "unknown variant `fly`",
        ),
        (
            "namespaces: [a]\nlimits:\n  memoryMiB: 0\n",
            4,
            "memoryMiB must be between 1 and 1024",
        ),
        (
            "namespaces: [a]\nlimits: {concurrency: 1000}\n",
            3,
            "concurrency must be between 1 and 256",
        ),
        (
            "namespaces: [a]\nserviceAccount: mirror\n",
            3,
            "namespace/name",
        ),
        ("namespace: [a]\n", 2, "unknown field `namespace`"),
        ("namespaces: []\n", 2, "namespaces is empty"),
    ];
    for (text, line, reason) in cases {
        let text = format!("apiVersion: kubewasm.dev/v1\n{text}");
        match Grant::parse(&text, "bad.yaml") {
            Err(GrantError::Invalid {
                file,
                line: l,
                reason: r,
                ..
            }) => {
                assert_eq!(file, "bad.yaml");
                assert_eq!(l, line, "{text:?}: {r}");
                assert!(r.contains(reason), "{text:?}: {r}");
            }
            other => panic!("{text:?} should be refused, got {other:?}"),
        }
    }
}

#[test]
fn wildcards_and_subresources_match() {
    let grant = Grant::parse(
        "apiVersion: kubewasm.dev/v1\nnamespaces: [\"*\"]\npermissions:\n  - apiGroups: [\"*\"]\n    resources: [\"*/status\"]\n    verbs: [patch]\n  - apiGroups: [apps]\n    resources: [deployments]\n    verbs: [\"*\"]\n    resourceNames: [web]\n",
        "g.yaml",
    )
    .unwrap();
    assert!(grant.allows("example.com", "widgets/status", Verb::Patch, None));
    assert!(!grant.allows("example.com", "widgets", Verb::Patch, None));
    assert!(grant.allows("apps", "deployments", Verb::Delete, Some("web")));
    assert!(!grant.allows("apps", "deployments", Verb::Delete, Some("db")));
}

#[test]
fn errors_quote_names_but_never_what_the_file_holds() {
    for text in [
        "root:$6$secret-hash:19000:0:99999:7:::\n",
        "apiVersion: kubewasm.dev/v1\nnamespaces: \"secret value here\"\n",
        "apiVersion: kubewasm.dev/v1\nnamespaces: [a]\nsecret-0123456789abcdef0123456789abcdef: 1\n",
    ] {
        let err = Grant::parse(text, "g.yaml").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{text:?}: {err}");
    }
    let err = Grant::parse("apiVersion: kubewasm.dev/v1\nnamespace: [a]\n", "g.yaml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `namespace`"), "{err}");
}
