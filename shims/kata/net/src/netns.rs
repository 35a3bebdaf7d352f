//! Running work in another network namespace: on a thread of its own, so no
//! other task of the process is moved.

use std::path::Path;

use nix::sched::{setns, CloneFlags};

use crate::NetError;

/// Runs `work` on a new thread that has joined the network namespace at `path`
/// (a bind-mounted `/proc/PID/ns/net`), and returns its result.
pub fn run_in<T, F>(path: &Path, work: F) -> Result<T, NetError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, NetError> + Send + 'static,
{
    let what = format!("enter network namespace {}", path.display());
    let ns = std::fs::File::open(path).map_err(|e| NetError::new(what.clone(), e))?;
    let worker = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetError::new(what, std::io::Error::from(e)))?;
            work()
        })
        .map_err(|e| NetError::new("start a thread", e))?;
    worker
        .join()
        .map_err(|_| NetError::new("network namespace work", std::io::Error::other("panicked")))?
}
