//! Label selectors in their string form (`app=web,tier!=cache,env in (a,b),!legacy`),
//! parsed into kube's [`Selector`] for validation and for matching cached objects.

use std::collections::BTreeSet;

use kube::core::{Expression, Selector};

/// Why a selector string is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a label selector as `kubectl -l` accepts it.
pub fn parse(selector: &str) -> Result<Selector, SelectorError> {
    let error = |reason: String| SelectorError {
        selector: selector.to_string(),
        reason,
    };
    let mut expressions = Vec::new();
    for requirement in split_requirements(selector).map_err(error)? {
        expressions.push(parse_requirement(requirement.trim()).map_err(error)?);
    }
    Ok(Selector::from_iter(expressions))
}

/// Splits on commas outside parentheses.
fn split_requirements(selector: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (index, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    parts.push(&selector[start..]);
    if parts.iter().any(|part| part.trim().is_empty()) {
        return Err("empty requirement".into());
    }
    Ok(parts)
}

fn parse_requirement(requirement: &str) -> Result<Expression, String> {
    if let Some(key) = requirement.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(label_key(key.trim())?));
    }
    for (operator, make) in [
        (
            "!=",
            Expression::NotEqual as fn(String, String) -> Expression,
        ),
        ("==", Expression::Equal),
        ("=", Expression::Equal),
    ] {
        if let Some((key, value)) = requirement.split_once(operator) {
            return Ok(make(label_key(key.trim())?, label_value(value.trim())?));
        }
    }
    let words: Vec<&str> = requirement.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim_start();
        for (operator, make) in [
            (
                "notin",
                Expression::NotIn as fn(String, BTreeSet<String>) -> Expression,
            ),
            ("in", Expression::In),
        ] {
            if let Some(set) = rest.strip_prefix(operator) {
                return Ok(make(label_key(key)?, value_set(set.trim())?));
            }
        }
        return Err(format!("unknown operator in {requirement:?}"));
    }
    Ok(Expression::Exists(label_key(requirement)?))
}

fn value_set(set: &str) -> Result<BTreeSet<String>, String> {
    let inner = set
        .strip_prefix('(')
        .and_then(|set| set.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, got {set:?}"))?;
    let values: BTreeSet<String> = inner
        .split(',')
        .map(|value| label_value(value.trim()))
        .collect::<Result<_, _>>()?;
    if values.is_empty() || values.iter().any(String::is_empty) {
        return Err("a set needs at least one non-empty value".into());
    }
    Ok(values)
}

fn label_key(key: &str) -> Result<String, String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty()
            || prefix.len() > 253
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!("invalid key prefix {prefix:?}"));
    }
    if name.is_empty() || name.len() > 63 || !is_label_chars(name) {
        return Err(format!("invalid key {key:?}"));
    }
    Ok(key.to_string())
}

fn label_value(value: &str) -> Result<String, String> {
    if value.len() > 63 || (!value.is_empty() && !is_label_chars(value)) {
        return Err(format!("invalid value {value:?}"));
    }
    Ok(value.to_string())
}

fn is_label_chars(s: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_alphanumeric();
    s.starts_with(alphanumeric)
        && s.ends_with(alphanumeric)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kube::core::SelectorExt;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_parses_and_matches() {
        let selector =
            parse("kubewasm.dev/mirror=true, tier!=cache,env in (a, b),!legacy,owner").unwrap();
        assert!(selector.matches(&labels(&[
            ("kubewasm.dev/mirror", "true"),
            ("env", "a"),
            ("owner", "x")
        ])));
        assert!(!selector.matches(&labels(&[
            ("kubewasm.dev/mirror", "true"),
            ("env", "c"),
            ("owner", "x")
        ])));
        assert!(!selector.matches(&labels(&[
            ("kubewasm.dev/mirror", "true"),
            ("env", "a"),
            ("owner", "x"),
            ("legacy", "")
        ])));
        let notin = parse("env notin (prod)").unwrap();
        assert!(notin.matches(&labels(&[("env", "dev")])));
        assert!(!notin.matches(&labels(&[("env", "prod")])));
        assert_eq!(parse("a==b").unwrap().to_string(), "a=b");
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in [
            "",
            "a=b,",
            "=b",
            "a in b",
            "a in ()",
            "a in (b",
            "bad key=1",
            "a=-b-",
            "a ~ b",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
