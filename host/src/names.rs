//! Kubernetes naming rules, as apimachinery's validation states them, for every part of
//! the host that takes a name from outside: grants, plugin descriptions, plugin files,
//! and what a guest hands its `kube` imports. Names a guest gives become segments of
//! request paths that kube-core does not escape, so they are checked before any grant
//! check, discovery or request.

/// Longest DNS-1123 label (namespaces, plugin names).
pub const MAX_LABEL: usize = 63;
/// Longest DNS-1123 subdomain (most object names, API groups, finalizer prefixes).
pub const MAX_SUBDOMAIN: usize = 253;

/// Whether `name` is a DNS-1123 label: lowercase letters, digits and `-`, starting and
/// ending with a letter or digit, at most 63 bytes. Namespaces are labels.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a DNS-1123 subdomain: dot-separated labels, at most 253 bytes.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= MAX_SUBDOMAIN && name.split('.').all(is_dns_label)
}

/// Longest version part of an apiVersion, and longest kind.
const MAX_VERSION_OR_KIND: usize = 63;

/// Checks an object name a guest gives, as apimachinery's path-segment rule has it (not
/// `.` or `..`, no `/` or `%`), and beyond it no `?`, `#`, whitespace or control
/// characters, at most 253 bytes: a name is one segment of a request path, never more.
pub fn check_object_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > MAX_SUBDOMAIN
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| matches!(c, '/' | '%' | '?' | '#') || c.is_whitespace() || c.is_control());
    if bad {
        Err(format!(
            "{:?} is not an object name (1-253 bytes, not . or .., without /, %, ?, # or \
             control characters)",
            shown(name)
        ))
    } else {
        Ok(())
    }
}

/// Checks a namespace a guest gives: a DNS-1123 label.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    if is_dns_label(namespace) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a namespace name (lowercase letters, digits and '-', at most 63)",
            shown(namespace)
        ))
    }
}

/// Checks an apiVersion: `VERSION` (the core group) or `GROUP/VERSION`, the group a DNS
/// subdomain and the version a DNS label (`v1`, `v1beta1`).
pub fn check_api_version(api_version: &str) -> Result<(), String> {
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (Some(group), version),
        None => (None, api_version),
    };
    let group_ok = group.is_none_or(is_dns_subdomain);
    if group_ok && version.len() <= MAX_VERSION_OR_KIND && is_dns_label(version) {
        Ok(())
    } else {
        Err(format!(
            "apiVersion {:?} is not of the form `v1` or `group/version`",
            shown(api_version)
        ))
    }
}

/// Checks a kind: an UpperCamelCase name of letters and digits, at most 63 bytes.
pub fn check_kind(kind: &str) -> Result<(), String> {
    if kind.len() <= MAX_VERSION_OR_KIND
        && kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(format!(
            "kind {:?} is not an UpperCamelCase name",
            shown(kind)
        ))
    }
}

/// At most the first 80 characters of `text`, for error messages about untrusted input.
fn shown(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Checks a finalizer name: a qualified name with a DNS subdomain prefix, as
/// `example.com/cleanup` (the API server warns about finalizers without a prefix, and a
/// prefix is what keeps one tenant's finalizer apart from another's).
pub fn check_finalizer(finalizer: &str) -> Result<(), String> {
    let Some((prefix, name)) = finalizer.split_once('/') else {
        return Err(format!(
            "finalizer {finalizer:?} must be domain-qualified, like `example.com/cleanup`"
        ));
    };
    let name_ok = !name.is_empty()
        && name.len() <= MAX_LABEL
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if prefix.contains('.') && is_dns_subdomain(prefix) && name_ok {
        Ok(())
    } else {
        Err(format!(
            "finalizer {finalizer:?} is not a qualified name like `example.com/cleanup`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for good in ["a", "team-a", "0x", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a/b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("kubewasm.dev"));
        assert!(!is_dns_subdomain("kubewasm..dev"));
        assert!(!is_dns_subdomain(&format!("{}.dev", "a.".repeat(126))));
    }

    #[test]
    fn object_names_are_one_path_segment() {
        for good in ["demo", "demo-mirror", "a.b", "x:y", "..a", &"n".repeat(253)] {
            assert!(check_object_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "x/proxy/y",
            "a%2Fb",
            "a?watch=true",
            "a#b",
            "a b",
            "a\nb",
            "a\u{7f}",
            &"n".repeat(254),
        ] {
            assert!(check_object_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_namespace("team-a").is_ok());
        for bad in ["", "a/b", "..", "Team", "a?b"] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn api_versions_and_kinds_have_their_syntax() {
        for good in ["v1", "apps/v1", "kubewasm.dev/v1beta1"] {
            assert!(check_api_version(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a/b/c", "v1?x=1", "apps/", "/v1", "Apps/v1", "apps/V1", "../v1",
        ] {
            assert!(check_api_version(bad).is_err(), "{bad:?}");
        }
        assert!(check_kind("ConfigMap").is_ok());
        for bad in ["", "configMap", "Config-Map", "Config/Map", &"A".repeat(64)] {
            assert!(check_kind(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(1000);
        assert!(check_kind(&long).unwrap_err().len() < 200);
    }

    #[test]
    fn finalizers_are_domain_qualified_names() {
        assert!(check_finalizer("kubewasm.dev/mirror").is_ok());
        assert!(check_finalizer("example.com/a_b.c").is_ok());
        for bad in [
            "mirror",
            "Kubewasm.dev/mirror",
            "kubewasm/mirror",
            "kubewasm.dev/",
            "kubewasm.dev/-x",
            "kubewasm.dev/a/b",
        ] {
            assert!(check_finalizer(bad).is_err(), "{bad}");
        }
    }
}
