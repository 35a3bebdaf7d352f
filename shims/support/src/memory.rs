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

/// Gives the allocator's free pages back to the kernel (glibc keeps freed heap
/// memory below its top for reuse). Called where a task call leaves the shim idle:
/// a container's create and start parse a spec and run a runtime, and what they
/// freed would otherwise stay resident for the pod's whole life.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own.
    unsafe {
        libc::malloc_trim(0);
    }
}
