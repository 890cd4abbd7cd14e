//! Checking a file against the contract: is it a component, of the right world and a
//! supported version, exporting everything a plugin must?

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::LoadError;

/// The WIT package every plugin implements.
pub const PACKAGE: &str = "kubewasm:controller";
/// The version of the contract this host implements (`wit/`).
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The interface a plugin exports.
pub const PLUGIN_INTERFACE: &str = "kubewasm:controller/plugin";
/// The functions that interface must have.
pub const PLUGIN_FUNCTIONS: [&str; 3] = ["describe", "apply", "cleanup"];

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// Rejects, before compiling anything, what is not a binary component.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(LoadError::NotWasm(describe_non_wasm(bytes)));
    }
    let version: [u8; 4] = bytes[4..8].try_into().expect("eight bytes checked above");
    match version {
        COMPONENT_VERSION => Ok(()),
        CORE_MODULE_VERSION => Err(LoadError::CoreModule),
        other => Err(LoadError::NotWasm(format!(
            "a WebAssembly binary of unknown version/layer {other:02x?}"
        ))),
    }
}

fn describe_non_wasm(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the file is empty".to_string();
    }
    if bytes.starts_with(b"\0asm") {
        return format!("a truncated WebAssembly header ({} bytes)", bytes.len());
    }
    if bytes.starts_with(b"\x7fELF") {
        return "an ELF binary (a precompiled artifact or native library), not a .wasm component"
            .to_string();
    }
    let head = &bytes[..bytes.len().min(512)];
    if let Ok(text) = std::str::from_utf8(head) {
        let trimmed = text.trim_start();
        if trimmed.starts_with("(component") || trimmed.starts_with("(module") {
            return "WebAssembly text format; plugins must be binary components".to_string();
        }
        if !text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
            let first_line = trimmed.lines().next().unwrap_or("");
            return format!(
                "a text file (it starts with {:?})",
                super::guest_log::truncate(first_line, 40)
            );
        }
    }
    format!(
        "not WebAssembly (it starts with bytes {:02x?})",
        &bytes[..bytes.len().min(4)]
    )
}

/// Checks that `component` exports a supported version of the plugin interface with
/// all its functions. Types are checked afterwards by the generated bindings.
pub fn check_exports(engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let component_type = component.component_type();
    let exports: Vec<(String, ComponentItem)> = component_type
        .exports(engine)
        .map(|(name, export)| (name.to_string(), export.ty))
        .collect();
    let Some((name, item)) = exports
        .iter()
        .find(|(name, _)| interface_name(name) == PLUGIN_INTERFACE)
    else {
        return Err(LoadError::WrongWorld {
            exports: exports.into_iter().map(|(name, _)| name).collect(),
        });
    };
    let found = name
        .split_once('@')
        .map(|(_, version)| version)
        .unwrap_or("");
    if !compatible(found, CONTRACT_VERSION) {
        return Err(LoadError::UnsupportedVersion {
            found: format!(
                "{PACKAGE}@{}",
                if found.is_empty() { "(none)" } else { found }
            ),
            supported: format!("{PACKAGE}@{CONTRACT_VERSION}"),
        });
    }
    let ComponentItem::ComponentInstance(instance) = item else {
        return Err(LoadError::WrongWorld {
            exports: vec![format!("{name} (not an interface)")],
        });
    };
    let functions: Vec<String> = instance
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let missing: Vec<String> = PLUGIN_FUNCTIONS
        .iter()
        .filter(|required| !functions.iter().any(|name| name == *required))
        .map(|name| name.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(LoadError::MissingExports {
            interface: name.clone(),
            missing,
        });
    }
    Ok(())
}

fn interface_name(export: &str) -> &str {
    export
        .split_once('@')
        .map(|(name, _)| name)
        .unwrap_or(export)
}

/// Semver compatibility as the component model's linker sees it: the same major
/// version, or for 0.x the same minor version.
fn compatible(found: &str, supported: &str) -> bool {
    let parse = |version: &str| -> Option<(u64, u64)> {
        let mut parts = version.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(found), parse(supported)) {
        (Some((0, found_minor)), Some((0, minor))) => found_minor == minor,
        (Some((found_major, _)), Some((major, _))) => found_major == major,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(check_header(b""), Err(LoadError::NotWasm(m)) if m.contains("empty")));
        assert!(
            matches!(check_header(b"hello world\nmore"), Err(LoadError::NotWasm(m)) if m.contains("text file"))
        );
        assert!(
            matches!(check_header(b"\0asm\x01"), Err(LoadError::NotWasm(m)) if m.contains("truncated"))
        );
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(
            matches!(check_header(b"(component)\n"), Err(LoadError::NotWasm(m)) if m.contains("text format"))
        );
        assert!(
            matches!(check_header(b"\x7fELF\x02\x01\x01\0"), Err(LoadError::NotWasm(m)) if m.contains("ELF"))
        );
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn versions_follow_semver_compatibility() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("", "0.1.0"));
    }
}
