//! Removing what a test left under its own directory: mounts first, deepest first.

use std::path::Path;

/// Every mount point at or below `dir`, deepest first, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .map(std::path::PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Lazily unmounts everything below `dir` (only mounts inside the test's own dir).
pub fn unmount_all_under(dir: &Path) {
    for mount in mounts_under(dir) {
        if let Err(e) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("cleanup: cannot unmount {}: {e}", mount.display());
        }
    }
}

/// Kills what a test daemon's pods left running and removes their cgroups and
/// runtime state: container processes by the cgroups named after the test's own task
/// ids (`crio-<id>`, from `<runroot>/bundles`), shims by their working directory (a
/// bundle under the test's dir). Only things the test created are touched.
pub fn kill_pods_under(base: &Path, runroot: &Path) {
    let ids: Vec<String> = std::fs::read_dir(runroot.join("bundles"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut cgroups = Vec::new();
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for c in controllers.flatten() {
            for id in &ids {
                let dir = c.path().join("crio").join(format!("crio-{id}"));
                if dir.is_dir() {
                    cgroups.push(dir);
                }
            }
        }
    }
    for dir in &cgroups {
        for pid in read_pids(&dir.join("cgroup.procs")) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for pid in processes_with_cwd_under(base) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for dir in &cgroups {
        for _ in 0..100 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    for id in &ids {
        for root in ["/run/containerd/runc/k8s.io", "/run/crio-rs/runc/k8s.io"] {
            let state = Path::new(root).join(id);
            if state.is_dir() {
                let _ = std::fs::remove_dir_all(state);
            }
        }
    }
}

fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Processes whose working directory is at or below `dir`.
pub fn processes_with_cwd_under(dir: &Path) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_octal() {
        assert_eq!(super::unescape(r"/a\040b\134c"), r"/a b\c");
    }
}
