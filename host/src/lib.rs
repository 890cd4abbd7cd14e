//! kubewasm: a Kubernetes controller host whose reconcilers are sandboxed WebAssembly
//! components.
//!
//! The host does what every controller needs natively, on kube-runtime; each plugin's
//! `apply` and `cleanup` run in a wasmtime sandbox behind the WIT contract in `wit/`.

pub mod cluster;
pub mod memory_host;
pub mod paths;
pub mod reconciler;
pub mod sandbox;
pub mod selector;
