//! kubewasm: a Kubernetes controller host whose reconcilers are sandboxed WebAssembly
//! components.
//!
//! The host does what every controller needs natively, on kube-runtime; each plugin's
//! `apply` and `cleanup` run in a wasmtime sandbox behind the WIT contract in `wit/`.

pub mod cluster;
pub mod grant;
pub mod manager;
pub mod memory_host;
pub mod names;
pub mod ops;
pub mod paths;
pub mod plugins;
pub mod rate;
pub mod reconciler;
pub mod runtime;
pub mod sandbox;
pub mod selector;
pub mod thread_cpu;
