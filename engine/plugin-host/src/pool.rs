//! The engine's instance allocator: wasmtime's pooling allocator. Every
//! plugin instance takes a slot (memory, tables, instance data) reserved once
//! at start; a dropped instance's slot is reset and stays mapped, so the next
//! instance of the same plugin skips the mmap/munmap and most first-touch page
//! faults that a fresh allocation pays. Isolation is unchanged: each call still
//! gets a new Store and instance, and a slot is reset (zeroed, data segments
//! restored) before reuse.
//!
//! The pool is sized for the host, not per plugin: per-plugin limits (memory,
//! tables, instances) are still enforced by each Store's limiter, and the pool's
//! per-slot maxima are the largest values [`crate::settings::Limits`] accepts.
//! When every slot is taken an instantiation fails (`FailureKind::Instantiate`,
//! "plugin instance pool exhausted ..."): the call is then refused like any
//! other plugin failure (never allowed, unless that plugin is configured
//! fail-open).

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Component instances (plugin instances) alive at once, by default: ready
/// instances ([`crate::warm::READY`] per plugin) plus calls in flight. 1000
/// slots serve e.g. 100 plugins with 2 ready instances each and 800 concurrent
/// calls.
pub const DEFAULT_INSTANCES: u32 = 1000;

/// Core modules a plugin component may instantiate (a Rust `wasm32-wasip2`
/// plugin has a handful: its module plus wit-component shims).
const CORE_PER_COMPONENT: u32 = 16;

/// Linear memories and tables per core module (wasmtime's default is one;
/// [`crate::settings::Limits`] defaults allow 4 memories per component).
const MEMORIES_PER_MODULE: u32 = 4;
const TABLES_PER_MODULE: u32 = 4;

/// Bytes of a memory slot kept resident (reset by memset instead of madvise)
/// when its instance is dropped. With the kernel's `PAGEMAP_SCAN` (Linux 6.7+)
/// only the pages the instance dirtied are reset; a call into a plugin touches
/// its shadow stack top and a little heap, well within this.
pub(crate) const MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Bytes of a table slot kept resident (a Rust plugin's table is a few hundred
/// entries of 8 bytes).
pub(crate) const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// The largest linear memory a slot can hold: the top of
/// `Limits::memory_bytes`' accepted range, so the per-plugin limiter, not the
/// pool, decides.
const MAX_MEMORY: usize = 4 << 30;

/// Pooling allocation for `instances` concurrent plugin instances.
pub(crate) fn strategy(instances: u32) -> InstanceAllocationStrategy {
    let instances = instances.max(1);
    let cores = instances.saturating_mul(CORE_PER_COMPONENT);
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(instances)
        .total_core_instances(cores)
        .max_core_instances_per_component(CORE_PER_COMPONENT)
        // A plugin component has one memory (its shims have none) and a few
        // tables. Each memory slot reserves 4 GiB + guard of address space (not
        // memory): 1000 slots are ~4 TiB of the 128 TiB a process can map.
        .total_memories(instances)
        .total_tables(instances.saturating_mul(4))
        .max_memories_per_module(MEMORIES_PER_MODULE)
        .max_tables_per_module(TABLES_PER_MODULE)
        .max_memories_per_component(MEMORIES_PER_MODULE)
        .max_tables_per_component(CORE_PER_COMPONENT.saturating_mul(TABLES_PER_MODULE))
        .max_memory_size(MAX_MEMORY)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT);
    InstanceAllocationStrategy::Pooling(p)
}

/// Applies the pool to an engine configuration.
pub(crate) fn configure(config: &mut Config, instances: u32) {
    config.allocation_strategy(strategy(instances));
}

/// Whether `err` says the pool has no free slot.
pub(crate) fn exhausted(err: &wasmtime::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some())
}
