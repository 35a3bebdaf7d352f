//! Child processes the harness starts: tied to the test's life, stopped by PID.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Makes `cmd` die with the test process even if the harness never gets to drop it.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of
    // the parent; nothing else runs between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        })
    }
}

/// Sends `signal` to the child we started, by its PID.
pub fn signal(child: &Child, signal: Signal) {
    let _ = kill(Pid::from_raw(child.id() as i32), signal);
}

/// Waits up to `timeout` for the child to exit.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, then SIGKILL after `grace`; always reaps.
pub fn terminate(child: &mut Child, grace: Duration) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    signal(child, Signal::SIGTERM);
    if let Some(status) = wait_timeout(child, grace) {
        return status;
    }
    let _ = child.kill();
    child
        .wait()
        .unwrap_or_else(|e| panic!("waiting for pid {}: {e}", child.id()))
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A process's resident memory (`VmRSS`) in KiB; 0 once it is gone.
pub fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `field` (`Pss:`, `Rss:`, ...) of `/proc/<pid>/smaps_rollup`, in KiB; 0 once
/// the process is gone.
pub fn rollup_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Linux reports CPU times in USER_HZ ticks, fixed at 100 per second in the ABI.
const USER_HZ: u64 = 100;

/// CPU time (user + system) of a process's own threads, and of its children it has
/// waited for, from `/proc/PID/stat`; zero once it is gone.
pub fn cpu_time(pid: u32) -> CpuTime {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    parse_cpu_time(&stat)
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CpuTime {
    /// The process's own threads, in user space and in the kernel.
    pub user: Duration,
    pub system: Duration,
    /// Children it has waited for, likewise.
    pub children_user: Duration,
    pub children_system: Duration,
}

impl CpuTime {
    pub fn own(&self) -> Duration {
        self.user + self.system
    }

    pub fn children(&self) -> Duration {
        self.children_user + self.children_system
    }
}

fn parse_cpu_time(stat: &str) -> CpuTime {
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Fields 14-17 (utime, stime, cutime, cstime); `fields[0]` is field 3.
    let ticks = |i: usize| fields.get(i - 3).copied().unwrap_or(0);
    let time = |t: u64| Duration::from_millis(t * 1000 / USER_HZ);
    CpuTime {
        user: time(ticks(14)),
        system: time(ticks(15)),
        children_user: time(ticks(16)),
        children_system: time(ticks(17)),
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Every live process's pid and command line (arguments joined by spaces).
pub fn command_lines() -> Vec<(u32, String)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| alive(*pid))
        .filter_map(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&c).replace('\0', " ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_fields_after_the_command_name() {
        let stat = "42 (tokio rt) S 1 42 42 0 -1 4194560 100 0 0 0 150 25 7 3 20 0 9 0";
        assert_eq!(
            parse_cpu_time(stat),
            CpuTime {
                user: Duration::from_millis(1500),
                system: Duration::from_millis(250),
                children_user: Duration::from_millis(70),
                children_system: Duration::from_millis(30),
            }
        );
        assert_eq!(parse_cpu_time(""), CpuTime::default());
    }
}
