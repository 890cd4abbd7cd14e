//! Components made on the spot from WIT and core modules, for the cases no toolchain
//! would build: another world, a missing export, another contract version, results
//! the canonical ABI cannot lift.

use std::path::PathBuf;

use anyhow::Context as _;
use wit_component::{ComponentEncoder, StringEncoding, dummy_module, embed_component_metadata};
use wit_parser::{ManglingAndAbi, Resolve};

/// The contract's WIT sources (`wit/*.wit`), concatenated per file.
pub fn contract_wit() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("reading wit/")
        .flatten()
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(entry.path()).expect("reading a WIT file"),
            )
        })
        .collect();
    files.sort();
    files
}

fn resolve(files: &[(String, String)]) -> anyhow::Result<(Resolve, wit_parser::PackageId)> {
    let mut sources = wit_parser::SourceMap::default();
    for (name, text) in files {
        sources.push_str(name, text.clone());
    }
    let group = sources
        .parse()
        .map_err(|(_, err)| anyhow::anyhow!("parsing WIT: {err}"))?;
    let mut resolve = Resolve::default();
    let package = resolve.push_group(group)?;
    Ok((resolve, package))
}

/// A component for `world` of the given WIT files whose functions all trap.
pub fn dummy_component(files: &[(String, String)], world: &str) -> anyhow::Result<Vec<u8>> {
    let (resolve, package) = resolve(files)?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut module = dummy_module(&resolve, world, ManglingAndAbi::Standard32);
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
        .context("encoding the component")
}

/// A component of the contract's world from a hand-written core module in WAT.
pub fn contract_component(core_wat: &str) -> anyhow::Result<Vec<u8>> {
    let (resolve, package) = resolve(&contract_wit())?;
    let world = resolve.select_world(&[package], Some("reconciler"))?;
    let mut module = wat::parse_str(core_wat)?;
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
        .context("encoding the component")
}
