//! The memory allocator: jemalloc, and the settings that keep a node's resident size close to what
//! it really holds.
//!
//! The `troc` binary (and the benchmarks, which stand for it) declare
//! `#[global_allocator] static ALLOC: troc_node::alloc::Allocator = troc_node::alloc::Allocator;`
//! and call [`configure`] first thing. Why jemalloc and not the system's malloc, measured in
//! `docs/performance.md` (sections 2 and 5): glibc's malloc keeps the memory a node frees, so a node
//! that rebuilt its indexes at start (reading every record once, through sled's page cache) stayed
//! ~80 MB above its live data for the rest of its life; jemalloc hands freed pages back to the OS
//! ([`release_free_memory`], and a background thread after a short decay). It also costs the
//! ingest path less (the allocator was a quarter of the writer's profile).
//!
//! Where jemalloc is not available (MSVC), or not the global allocator (tests), these functions
//! change nothing that matters: they configure an allocator nobody uses.

#[cfg(not(target_env = "msvc"))]
mod imp {
    use tikv_jemalloc_ctl::{Access, AsName};

    /// The allocator to declare as `#[global_allocator]`.
    pub use tikv_jemallocator::Jemalloc as Allocator;

    /// How long freed ("dirty") pages stay in the process before they are given back, in
    /// milliseconds. Short: a node's allocations come in bursts (a catch-up, a rebuild), and pages
    /// kept between bursts are resident size nobody uses.
    const DIRTY_DECAY_MS: isize = 1_000;

    /// Turns on jemalloc's background purging thread and the decay times above, for the arenas that
    /// exist and those created later. Errors are ignored: a setting that does not take leaves the
    /// allocator's defaults, which are correct, only slower to give memory back.
    pub fn configure() {
        let _ = b"background_thread\0".name().write(true);
        let _ = b"arenas.dirty_decay_ms\0".name().write(DIRTY_DECAY_MS);
        let _ = b"arenas.muzzy_decay_ms\0".name().write(0isize);
        set_decay(DIRTY_DECAY_MS);
    }

    /// Gives every freed page back to the OS now (setting a decay time of 0 purges at once), then
    /// restores the normal decay. Called after the store's rebuild at start.
    pub fn release_free_memory() {
        set_decay(0);
        set_decay(DIRTY_DECAY_MS);
    }

    fn set_decay(dirty_ms: isize) {
        let Ok(arenas) = b"arenas.narenas\0".name().read() else { return };
        let arenas: u32 = arenas;
        for i in 0..arenas {
            // An arena index that was never initialised refuses the write: nothing to purge there.
            let _ = format!("arena.{i}.dirty_decay_ms\0").as_bytes().name().write(dirty_ms);
            let _ = format!("arena.{i}.muzzy_decay_ms\0").as_bytes().name().write(0isize);
        }
    }
}

#[cfg(target_env = "msvc")]
mod imp {
    /// The system allocator where jemalloc is not available.
    pub use std::alloc::System as Allocator;

    pub fn configure() {}

    pub fn release_free_memory() {}
}

pub use imp::{Allocator, configure, release_free_memory};
