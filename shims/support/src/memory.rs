//! Allocator settings for a process that lives as long as its pod and is mostly
//! idle: what it keeps, every pod pays for.

/// One allocator arena for the whole process: per-thread arenas cost a shim more
/// than the lock contention they avoid at a few calls a second.
pub fn single_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
