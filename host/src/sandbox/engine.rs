//! The one wasmtime [`Engine`] of the process, and the ticker that drives its epochs.

use std::num::NonZeroUsize;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. Deadlines are counted in these ticks, and a
/// running guest yields to the async executor once a tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each pooled linear memory kept resident between instances where the kernel
/// can say which pages an instance dirtied (PAGEMAP_SCAN): enough for what a typical
/// guest touches in one call (a Rust guest's 1 MiB stack sits below its data and heap).
const POOL_MEMORY_KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// The same without PAGEMAP_SCAN, where the whole window is reset with memset on every
/// release, touched or not.
const POOL_MEMORY_KEEP_RESIDENT_BYTES_UNSCANNED: usize = 64 << 10;
/// Bytes of each pooled table slot kept resident between instances.
const POOL_TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;
/// Pooled slots returned to the kernel together.
const POOL_DECOMMIT_BATCH: usize = 16;
/// Frames of a trapping guest's stack its debug log shows.
const GUEST_BACKTRACE_FRAMES: NonZeroUsize = NonZeroUsize::new(20).expect("not zero");

/// How instances get their memories and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Allocator {
    /// Allocate on demand with mmap for every instance.
    OnDemand,
    /// Pre-reserve slots and reuse them, with copy-on-write memory images: the fastest
    /// instantiation, at the cost of reserved address space.
    #[default]
    Pooling,
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The instance allocator.
    pub allocator: Allocator,
    /// With the pooling allocator: how many component instances may exist at once
    /// (across all plugins and concurrent calls).
    pub pool_instances: u32,
    /// With the pooling allocator: the largest linear memory any plugin may be granted.
    pub pool_max_memory_bytes: usize,
    /// Whether fuel metering is available (a plugin's grant may then set a fuel limit).
    /// Off by default: metering costs every plugin about a fifth more compile time and
    /// run time, whether its grant sets fuel or not.
    pub fuel: bool,
    /// Whether compiled functions are kept in memory for the next compile, so that a
    /// reloaded component recompiles only the functions that changed.
    pub incremental_compilation: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            allocator: Allocator::default(),
            pool_instances: 256,
            pool_max_memory_bytes: 1 << 30,
            fuel: false,
            incremental_compilation: true,
        }
    }
}

/// Builds the engine: epoch interruption for deadlines, async support for host calls,
/// copy-on-write memory images and the chosen allocator.
pub fn build(config: &EngineConfig) -> wasmtime::Result<Engine> {
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .consume_fuel(config.fuel)
        .memory_init_cow(true)
        .wasm_component_model(true)
        .parallel_compilation(true)
        .wasm_backtrace_max_frames(guest_backtrace_frames());
    if config.incremental_compilation {
        wasm.enable_incremental_compilation(std::sync::Arc::new(
            super::function_cache::FunctionCache::default(),
        ))?;
    }
    if config.allocator == Allocator::Pooling {
        let instances = config.pool_instances;
        let mut pool = PoolingAllocationConfig::new();
        // Components built by componentize-py or componentize-js hold several core
        // instances, memories and tables (the interpreter, libc, adapters).
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(16))
            .total_memories(instances.saturating_mul(4))
            .total_tables(instances.saturating_mul(8))
            .total_stacks(instances)
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(32)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(4 << 20)
            .table_elements(100_000)
            .max_memory_size(config.pool_max_memory_bytes);
        // Resetting the pages an instance dirtied in place (found with Linux's
        // PAGEMAP_SCAN, where the kernel has it; otherwise the first pages of each
        // slot) rather than handing them back with madvise spares the next instance
        // its page faults and the host the TLB shootdowns of every release; returning
        // the rest in batches cuts syscalls further. See BENCHMARKS.md.
        let scanned = PoolingAllocationConfig::is_pagemap_scan_available();
        tracing::debug!(
            pagemap_scan = scanned,
            "pooled memory reset {}",
            if scanned {
                "in place, dirtied pages only"
            } else {
                "with memset and madvise"
            }
        );
        let (pagemap_scan, memory_keep_resident) = if scanned {
            (Enabled::Yes, POOL_MEMORY_KEEP_RESIDENT_BYTES)
        } else {
            (Enabled::No, POOL_MEMORY_KEEP_RESIDENT_BYTES_UNSCANNED)
        };
        pool.linear_memory_keep_resident(memory_keep_resident)
            .table_keep_resident(POOL_TABLE_KEEP_RESIDENT_BYTES)
            .pagemap_scan(pagemap_scan)
            .decommit_batch_size(POOL_DECOMMIT_BATCH);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&wasm)
}

/// Frames of a trapping guest's stack to keep, when anything will read them: only the
/// debug log of the trap does (`call::log_backtrace`). Capturing walks the whole stack,
/// however few frames are kept, which for a stack overflow is half of the call's cost.
fn guest_backtrace_frames() -> Option<NonZeroUsize> {
    let logged = tracing::enabled!(target: "kubewasm::sandbox::call", tracing::Level::DEBUG);
    logged.then_some(GUEST_BACKTRACE_FRAMES)
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] on a thread of its own, until the
/// engine is dropped. A thread rather than a task: it must tick even when every
/// executor thread is busy.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_backtraces_are_captured_only_when_their_debug_log_is_on() {
        let info = tracing_subscriber::fmt().with_env_filter("info").finish();
        tracing::subscriber::with_default(info, || assert_eq!(guest_backtrace_frames(), None));
        let debug = tracing_subscriber::fmt()
            .with_env_filter("kubewasm::sandbox=debug")
            .finish();
        tracing::subscriber::with_default(debug, || {
            assert_eq!(guest_backtrace_frames(), Some(GUEST_BACKTRACE_FRAMES))
        });
    }
}
