//! Tap devices: an Ethernet link whose other end is a file descriptor the
//! hypervisor reads and writes the guest NIC's frames through.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::NetError;

/// Creates tap `name` in the calling thread's network namespace; it lives as
/// long as a descriptor of it is open.
pub fn create(name: &str) -> Result<OwnedFd, NetError> {
    let what = || format!("create tap {name}");
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(NetError::new(
            what(),
            std::io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| NetError::new(what(), e))?;
    // SAFETY: an all-zero `ifreq` is a valid value (a C struct of integers and
    // byte arrays).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `request` is, on an
    // open descriptor of the tun device.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut request) };
    if rc < 0 {
        return Err(NetError::new(what(), std::io::Error::last_os_error()));
    }
    Ok(file.into())
}
