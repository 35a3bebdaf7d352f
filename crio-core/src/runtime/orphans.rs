//! What a crash can leave of a task: a shim that serves it while no record names
//! the shim, a `runc init` its shim never recorded (a Create cancelled by the core's
//! death), processes in its cgroup. Each bundle names its shim binary, so the shim's
//! own `delete` action (which force-deletes the task in its runtime by id, whatever
//! the shim remembers) can run for any bundle the core finds; what still runs with
//! its working directory in the bundle (the shim server, a `runc init`) is killed
//! by PID.

use std::path::{Path, PathBuf};

/// The file in a bundle naming the shim binary that serves it (containerd's name).
pub(crate) const SHIM_BINARY_FILE: &str = "shim-binary-path";

/// Records which shim serves `bundle`, before the shim is started.
pub(crate) fn record_shim_binary(bundle: &Path, binary: &Path) -> std::io::Result<()> {
    std::fs::write(
        bundle.join(SHIM_BINARY_FILE),
        binary.as_os_str().as_encoded_bytes(),
    )
}

/// The shim binary a bundle names, if it names one.
pub(crate) fn shim_binary_of(bundle: &Path) -> Option<PathBuf> {
    let bytes = std::fs::read(bundle.join(SHIM_BINARY_FILE)).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// Processes (not this one) whose working directory is `dir` or below: a shim
/// runs in its pod's bundle, `runc create` and `runc init` in the task's.
pub(crate) fn processes_in(dir: &Path) -> Vec<i32> {
    let own = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// SIGKILLs every process working in `dir` (by PID); returns how many.
pub(crate) fn kill_processes_in(dir: &Path) -> usize {
    let pids = processes_in(dir);
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_names_its_shim_and_its_processes_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(shim_binary_of(dir.path()), None);
        record_shim_binary(dir.path(), Path::new("/usr/bin/shim")).expect("write");
        assert_eq!(
            shim_binary_of(dir.path()),
            Some(PathBuf::from("/usr/bin/shim"))
        );
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn()
            .expect("sleep");
        let found = processes_in(dir.path());
        assert_eq!(found, [child.id() as i32]);
        assert_eq!(kill_processes_in(dir.path()), 1);
        let status = child.wait().expect("reaped");
        assert!(!status.success());
    }
}
