//! OOM notifications for a container's cgroup: cgroup v1's `memory.oom_control`
//! with an eventfd registered in `cgroup.event_control`, and cgroup v2's
//! `memory.events` (`oom_kill` count), polled.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::{io_err, Error, Result};

/// Which memory cgroup a process is in, and how to watch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryCgroup {
    V1(PathBuf),
    V2(PathBuf),
}

/// Mount points of the v1 memory hierarchy and of cgroup2, from mountinfo text.
pub fn cgroup_mounts(mountinfo: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut v1 = None;
    let mut v2 = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4);
        let mut rf = right.split(' ');
        let fstype = rf.next();
        let super_opts = rf.nth(1).unwrap_or("");
        match (fstype, mount_point) {
            (Some("cgroup"), Some(mp)) if super_opts.split(',').any(|o| o == "memory") => {
                v1.get_or_insert_with(|| PathBuf::from(mp));
            }
            (Some("cgroup2"), Some(mp)) => {
                v2.get_or_insert_with(|| PathBuf::from(mp));
            }
            _ => {}
        }
    }
    (v1, v2)
}

/// The cgroup mount points of this process's mount namespace, found once: they do
/// not move during a shim's life. Where the host mounts them in the usual places
/// they are checked there; mountinfo, which grows with every pod of the node and
/// costs a millisecond to read on a busy one, only where it does not.
fn own_cgroup_mounts() -> Result<&'static (Option<PathBuf>, Option<PathBuf>)> {
    static MOUNTS: OnceLock<(Option<PathBuf>, Option<PathBuf>)> = OnceLock::new();
    if let Some(mounts) = MOUNTS.get() {
        return Ok(mounts);
    }
    let found = match usual_cgroup_mounts() {
        Some(mounts) => mounts,
        None => cgroup_mounts(
            &std::fs::read_to_string("/proc/self/mountinfo").map_err(io_err("read mountinfo"))?,
        ),
    };
    Ok(MOUNTS.get_or_init(|| found))
}

/// The cgroup mount points where systemd (and Debian without it) mounts them: the
/// v1 memory hierarchy at `/sys/fs/cgroup/memory` (a cgroup file system holding
/// `memory.oom_control`), cgroup2 at `/sys/fs/cgroup` or, on a hybrid host,
/// `/sys/fs/cgroup/unified`. `None` when the host has neither a v1 memory
/// hierarchy there nor cgroup2 at `/sys/fs/cgroup`: mountinfo decides then.
fn usual_cgroup_mounts() -> Option<(Option<PathBuf>, Option<PathBuf>)> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    let is = |path: &Path, magic| statfs(path).is_ok_and(|s| s.filesystem_type() == magic);
    let v2 = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(Path::new)
        .find(|p| is(p, CGROUP2_SUPER_MAGIC))
        .map(Path::to_path_buf);
    let memory = Path::new("/sys/fs/cgroup/memory");
    if is(memory, CGROUP_SUPER_MAGIC) && memory.join("memory.oom_control").exists() {
        return Some((Some(memory.to_path_buf()), v2));
    }
    // Pure cgroup2: the memory controller cannot be in a v1 hierarchy as well.
    v2.filter(|p| p == Path::new("/sys/fs/cgroup"))
        .map(|p| (None, Some(p)))
}

/// The memory cgroup of a process under the (v1 memory, cgroup2) mount points.
fn memory_cgroup_under(
    proc_cgroup: &str,
    (v1_mount, v2_mount): &(Option<PathBuf>, Option<PathBuf>),
) -> Option<MemoryCgroup> {
    let mut v2_path = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            if let Some(m) = &v1_mount {
                return Some(MemoryCgroup::V1(m.join(rel)));
            }
        }
        if controllers.is_empty() {
            if let Some(m) = &v2_mount {
                v2_path = Some(m.join(rel));
            }
        }
    }
    v2_path
        .filter(|p| p.join("memory.events").exists())
        .map(MemoryCgroup::V2)
}

/// The `oom_kill` count in a `memory.events` text.
pub fn oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts watching the memory cgroup of `pid`; each message is one OOM event.
/// The channel closes when the cgroup goes away.
pub fn watch(pid: u32) -> Result<mpsc::UnboundedReceiver<()>> {
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(io_err(format!("read /proc/{pid}/cgroup")))?;
    let cgroup = memory_cgroup_under(&proc_cgroup, own_cgroup_mounts()?)
        .ok_or_else(|| Error::NotFound(format!("no memory cgroup for pid {pid}")))?;
    let (tx, rx) = mpsc::unbounded_channel();
    match cgroup {
        MemoryCgroup::V1(dir) => watch_v1(&dir, tx)?,
        MemoryCgroup::V2(dir) => watch_v2(dir, tx)?,
    }
    Ok(rx)
}

fn watch_v1(dir: &Path, tx: mpsc::UnboundedSender<()>) -> Result<()> {
    let control = dir.join("memory.oom_control");
    let oom_control =
        File::open(&control).map_err(io_err(format!("open {}", control.display())))?;
    // SAFETY: eventfd takes no pointers; the returned fd is checked and then owned.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(Error::io("eventfd", std::io::Error::last_os_error()));
    }
    // SAFETY: `efd` is a fresh fd owned by nothing else.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd()),
    )
    .map_err(io_err(format!("register OOM eventfd in {}", dir.display())))?;
    // A task on the shim's runtime, not a thread: one per container adds up.
    // SAFETY: the File owns the eventfd and is moved into the AsyncFd, so the fd
    // stays open and the same for the AsyncFd's whole life.
    let efd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            File::from(efd),
            tokio::io::Interest::READABLE,
        )
    }
    .map_err(|e| Error::io("watch OOM eventfd", std::io::Error::from(e)))?;
    tokio::spawn(async move {
        let _keep = oom_control;
        let mut buf = [0u8; 8];
        loop {
            let Ok(mut ready) = efd.readable().await else {
                break;
            };
            match ready.try_io(|fd| fd.get_ref().read(&mut buf)) {
                Ok(Ok(8)) => {}
                Ok(_) => break,
                Err(_would_block) => continue,
            }
            // The eventfd also fires when the cgroup is removed.
            if !control.exists() {
                break;
            }
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn watch_v2(dir: PathBuf, tx: mpsc::UnboundedSender<()>) -> Result<()> {
    poll(std::sync::Arc::new(OomCounter::new(dir)?), tx, ());
    Ok(())
}

/// Polls `counter` every [`POLL`] and sends `item` for each look that found new
/// kills, until the cgroup is gone or the receiver is.
pub fn poll<T: Clone + Send + 'static>(
    counter: std::sync::Arc<OomCounter>,
    tx: mpsc::UnboundedSender<T>,
    item: T,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL).await;
            match counter.new_kills() {
                None => return,
                Some(true) => {
                    tracing::info!(events = %counter.events.display(), "OOM kill");
                    if tx.send(item.clone()).is_err() {
                        return;
                    }
                }
                Some(false) => {}
            }
        }
    });
}

/// How often a cgroup v2 `memory.events` is read.
pub const POLL: Duration = Duration::from_millis(200);

/// The `oom_kill` count of a cgroup v2 `memory.events`, read on demand: a poll
/// loop and a last look before the cgroup is deleted (its process's exit may come
/// between two polls) share what was seen.
#[derive(Debug)]
pub struct OomCounter {
    events: PathBuf,
    seen: std::sync::atomic::AtomicU64,
}

impl OomCounter {
    /// Counts from now (call before the process starts: a kill soon after its
    /// start is then not taken for an old one).
    pub fn new(cgroup: PathBuf) -> Result<Self> {
        let events = cgroup.join("memory.events");
        let text = std::fs::read_to_string(&events)
            .map_err(io_err(format!("read {}", events.display())))?;
        Ok(OomCounter {
            seen: oom_kills(&text).into(),
            events,
        })
    }

    /// The counter of the cgroup v2 memory cgroup of `pid`.
    pub fn of(pid: u32) -> Result<Self> {
        let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(io_err(format!("read /proc/{pid}/cgroup")))?;
        match memory_cgroup_under(&proc_cgroup, own_cgroup_mounts()?) {
            Some(MemoryCgroup::V2(dir)) => Self::new(dir),
            _ => Err(Error::NotFound(format!(
                "no cgroup v2 memory cgroup for pid {pid}"
            ))),
        }
    }

    /// Whether kills happened since the last look; `None` once the cgroup is gone.
    pub fn new_kills(&self) -> Option<bool> {
        let now = oom_kills(&std::fs::read_to_string(&self.events).ok()?);
        let before = self
            .seen
            .fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        Some(now > before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_mounts() {
        let (v1, v2) = cgroup_mounts(MOUNTINFO);
        assert_eq!(v1, Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    /// The mount points checked in their usual places are the ones mountinfo
    /// names, on this host (cgroup v1 with cgroup2 at `unified` here; any host
    /// whose hierarchies are where systemd puts them).
    #[test]
    fn the_usual_places_agree_with_mountinfo() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let from_mountinfo = cgroup_mounts(&mountinfo);
        let usual = usual_cgroup_mounts().expect("this host mounts cgroups in the usual places");
        assert_eq!(usual, from_mountinfo);
    }

    #[test]
    fn v1_memory_cgroup_of_a_process() {
        let proc_cgroup = "5:memory:/default/c1\n4:cpu:/default/c1\n0::/default/c1\n";
        assert_eq!(
            memory_cgroup_under(proc_cgroup, &cgroup_mounts(MOUNTINFO)),
            Some(MemoryCgroup::V1("/sys/fs/cgroup/memory/default/c1".into()))
        );
    }

    #[test]
    fn counts_oom_kills() {
        assert_eq!(oom_kills("low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n"), 2);
        assert_eq!(oom_kills(""), 0);
    }
}
