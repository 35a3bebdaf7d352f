//! Giving freed heap memory back to the kernel. glibc keeps what a thread's arena
//! freed for reuse, and only trims the top of each arena: after pods come and go,
//! most of the daemon's anonymous memory was free but still resident (13 of 14 MB
//! after 100 pods here). A trim shortly after the calls that free a lot (removals,
//! pulls) returns it, and fewer arenas leave less of it scattered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A trim is scheduled.
static PENDING: AtomicBool = AtomicBool::new(false);

/// How long after the call that asked the trim runs: calls that come in a burst
/// (the kubelet removes a pod's containers, then the pod) share one.
const DELAY: Duration = Duration::from_millis(500);

/// At most two allocator arenas: glibc's default (eight per core) spreads the
/// daemon's few allocations over as many heaps, each keeping its own free pages.
/// Called before any thread starts.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Schedules a trim on the blocking pool, unless one is already scheduled; whether
/// this call scheduled it.
pub(crate) fn trim_soon() -> bool {
    if PENDING.swap(true, Ordering::AcqRel) {
        return false;
    }
    tokio::spawn(async {
        tokio::time::sleep(DELAY).await;
        PENDING.store(false, Ordering::Release);
        crate::blocking::run(trim).await;
    });
    true
}

/// Releases every whole free page of every arena.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_burst_of_requests_schedules_one_trim_and_a_later_one_another() {
        assert!(super::trim_soon(), "the first call schedules a trim");
        assert!(!super::trim_soon(), "a call within the delay shares it");
        tokio::time::sleep(super::DELAY * 3).await;
        assert!(super::trim_soon(), "after it ran, a call schedules another");
    }
}
