//! systemd's service protocol (sd_notify(3)) for `Type=notify` units: `READY=1`
//! once the CRI socket serves, `RELOADING=1` and `READY=1` around a SIGHUP
//! reload, `STOPPING=1` when a stop begins, and `WATCHDOG=1` at half the unit's
//! `WatchdogSec`. Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where systemd listens, read once at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    socket: Option<String>,
}

/// Environment a child (a shim) must not inherit: it would talk to systemd as us.
pub(crate) const ENV: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

impl Notifier {
    pub(crate) fn from_env() -> Self {
        Self {
            socket: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// Sends `state` (`READY=1`...); a failure is logged, never fatal.
    pub(crate) fn notify(&self, state: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(e) = send(socket, state) {
            tracing::warn!("systemd notify {state:?} to {socket}: {e}");
        }
    }

    /// Half the unit's `WatchdogSec`, when systemd watches this process.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }

    /// Pings the watchdog for the life of the runtime.
    pub(crate) fn spawn_watchdog(&self) {
        let Some(every) = self.watchdog_interval() else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                me.notify("WATCHDOG=1");
            }
        });
    }
}

/// One datagram to a path or an abstract (`@name`) socket.
fn send(socket: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(state.as_bytes(), PathBuf::from(socket))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_a_path_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: Some(path.display().to_string()),
        };
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1");
        Notifier::default().notify("READY=1");
    }
}
