//! Ids and times of records: 64 hex digits as CRI-O and containerd make them, Unix
//! nanoseconds.

/// A 64-hex-digit id, as CRI-O and containerd use.
pub fn new_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // Never expected on Linux; still unique enough for one host.
        let t = now_nanos().to_le_bytes();
        bytes[..8].copy_from_slice(&t);
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(bytes)
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
