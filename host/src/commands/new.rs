//! `kubewasm new --lang LANG NAME`: scaffolds a plugin folder (a reconciler on the
//! language's SDK, a grant and a README) that builds and passes `kubewasm check` as is.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
    C,
    Go,
}

impl Language {
    fn display_name(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::C => "C",
            Language::Go => "Go",
        }
    }

    /// The folder's name under `guest-sdk/`.
    fn sdk_folder(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
            Language::C => "c",
            Language::Go => "go",
        }
    }

    /// The template files: path in the plugin folder, and text.
    fn sources(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::Rust => &[
                (
                    "Cargo.toml",
                    include_str!("../../templates/rust/Cargo.toml"),
                ),
                (
                    "src/lib.rs",
                    include_str!("../../templates/rust/src/lib.rs"),
                ),
            ],
            Language::Python => &[("app.py", include_str!("../../templates/python/app.py"))],
            Language::Js => &[("app.js", include_str!("../../templates/js/app.js"))],
            Language::C => &[("app.c", include_str!("../../templates/c/app.c"))],
            Language::Go => &[("app.go", include_str!("../../templates/go/app.go"))],
        }
    }
}

const GRANT: &str = include_str!("../../templates/grant.yaml");
const README: &str = include_str!("../../templates/README.md");

/// Arguments of `kubewasm new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's language.
    #[arg(long, value_enum)]
    pub lang: Language,
    /// The folder to create the plugin in; it must be inside a kubewasm checkout, whose
    /// wit/ and guest-sdk/ the plugin builds on.
    #[arg(long, default_value = "plugins")]
    pub dir: PathBuf,
    /// The plugin's name: lowercase letters, digits and dashes. It names the folder, the
    /// built NAME.wasm and the plugin in logs and metrics.
    pub name: String,
}

/// Creates `DIR/NAME` and prints what to do next.
pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let parent = std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let root = checkout_root(&parent).with_context(|| {
        format!(
            "{} is not inside a kubewasm checkout (a folder with wit/ and guest-sdk/): \
             plugins build on those, so create it inside one (--dir)",
            parent.display()
        )
    })?;
    let folder = parent.join(&args.name);
    if folder.exists() {
        bail!("{} already exists; nothing was written", folder.display());
    }
    let relative_folder = relative(&root, &folder);
    let sdk = format!("{}/guest-sdk", relative(&folder, &root).display());
    let source = args.lang.sources().last().map_or("", |(path, _)| path);
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{language}}", args.lang.display_name())
            .replace("{{sdk_lang}}", args.lang.sdk_folder())
            .replace("{{sdk}}", &sdk)
            .replace("{{dir}}", &relative_folder.display().to_string())
            .replace("{{source}}", source)
    };
    let files = args
        .lang
        .sources()
        .iter()
        .copied()
        .chain([("grant.yaml", GRANT), ("README.md", README)]);
    for (path, template) in files {
        let path = folder.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, fill(template))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {}: a {} plugin\n\nfrom {}:\n  scripts/build-plugin.sh {}\n  \
         cargo run -p kubewasm -- check target/plugins/{}.wasm",
        folder.display(),
        args.lang.display_name(),
        root.display(),
        relative_folder.display(),
        args.name,
    );
    Ok(())
}

/// A plugin name is a DNS label, so that it works as a file name, a Rust crate name, a
/// metrics label and part of Kubernetes names.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if !valid {
        bail!(
            "plugin name {name:?} is not valid: use 1 to 63 lowercase letters, digits and \
             dashes, starting with a letter and not ending with a dash"
        );
    }
    Ok(())
}

/// The nearest folder at or above `path` with `wit/plugin.wit` and `guest-sdk/`.
fn checkout_root(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .find(|dir| dir.join("wit/plugin.wit").is_file() && dir.join("guest-sdk").is_dir())
        .map(Path::to_path_buf)
}

/// `to` relative to `from`, both absolute and without `..` (`from` is a folder).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf =
        std::iter::repeat_n(Component::ParentDir, from.len() - common).collect();
    path.extend(&to[common..]);
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels() {
        for good in ["mirror", "configmap-mirror-2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Mirror",
            "my_plugin",
            "-x",
            "x-",
            "2x",
            "a/b",
            &"x".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_paths_walk_up_then_down() {
        let root = Path::new("/repo");
        assert_eq!(
            relative(root, Path::new("/repo/plugins/x")),
            Path::new("plugins/x")
        );
        assert_eq!(
            relative(Path::new("/repo/plugins/x"), root),
            Path::new("../..")
        );
        assert_eq!(relative(root, root), Path::new("."));
    }

    #[test]
    fn every_template_placeholder_is_filled() {
        let placeholders = ["name", "language", "sdk_lang", "sdk", "dir", "source"];
        let languages = [
            Language::Rust,
            Language::Python,
            Language::Js,
            Language::C,
            Language::Go,
        ];
        for language in languages {
            for (path, template) in language.sources().iter().chain(&[("README.md", README)]) {
                let mut rest = template.to_string();
                for placeholder in placeholders {
                    rest = rest.replace(&format!("{{{{{placeholder}}}}}"), "");
                }
                assert!(!rest.contains("{{"), "{path} has an unknown placeholder");
            }
        }
    }
}
