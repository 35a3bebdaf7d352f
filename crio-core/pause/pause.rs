//! The built-in pause process: PID 1 of a pod's infra container. It holds the pod's
//! namespaces, reaps zombies (when the pod shares its PID namespace) and exits
//! cleanly on SIGINT/SIGTERM. Built static by crio-core's build script with no crates,
//! and embedded in the `crio` binary.

use std::ptr::null_mut;

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
const SIGCHLD: i32 = 17;
const WNOHANG: i32 = 1;

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn pause() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn _exit(code: i32) -> !;
    fn getpid() -> i32;
}

extern "C" fn on_terminate(_: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { _exit(0) }
}

extern "C" fn on_child(_: i32) {
    // SAFETY: waitpid with a null status pointer is async-signal-safe.
    unsafe { while waitpid(-1, null_mut(), WNOHANG) > 0 {} }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("pause (crio-rs) {}", env!("CARGO_PKG_VERSION_OVERRIDE"));
        return;
    }
    // SAFETY: plain libc calls; the handlers only call async-signal-safe functions.
    unsafe {
        if getpid() != 1 {
            eprintln!("pause: warning: not running as PID 1");
        }
        signal(SIGINT, on_terminate as *const () as usize);
        signal(SIGTERM, on_terminate as *const () as usize);
        signal(SIGCHLD, on_child as *const () as usize);
        loop {
            pause();
        }
    }
}
