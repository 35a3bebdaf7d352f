//! Crash points for the reliability tests: with `CRIO_RS_FAILPOINT=<name>` in its
//! environment, the daemon kills itself with SIGKILL when it reaches the named
//! point, as a crash or an OOM kill would stop it there. Without the variable a
//! point costs one comparison of a string read once.

use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const ENV: &str = "CRIO_RS_FAILPOINT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(ENV).ok().filter(|p| !p.is_empty()))
        .as_deref()
}

/// Dies here if this is the armed point.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        tracing::error!("failpoint {name}: killing the daemon");
        // SAFETY: kill(2) of this process; nothing is read or written.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// If this is the armed point, the daemon dies a little later, from another
/// thread, while the caller awaits what it starts next (a shim's Create, say): the
/// crash that cancels a request in flight.
pub fn while_awaiting(name: &str) {
    if armed() == Some(name) {
        tracing::error!("failpoint {name}: killing the daemon in 30 ms");
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(30));
            // SAFETY: kill(2) of this process; nothing is read or written.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        });
    }
}

/// Every point, for the tests that visit them in turn.
pub const POINTS: &[&str] = &[
    "run_sandbox.recorded",
    "run_sandbox.namespaces_pinned",
    "run_sandbox.spec_written",
    "run_sandbox.shim_started",
    "run_sandbox.creating_pause",
    "run_sandbox.pause_created",
    "run_sandbox.pause_started",
    "create_container.recorded",
    "create_container.rootfs_mounted",
    "create_container.creating",
    "create_container.created",
];
