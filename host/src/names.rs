//! Kubernetes naming rules, as apimachinery's validation states them, for every part of
//! the host that takes a name from outside: grants, plugin descriptions, plugin files.

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
