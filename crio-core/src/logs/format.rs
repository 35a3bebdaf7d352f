//! The CRI log format: `<RFC3339Nano timestamp> <stream> <F|P> <content>\n`, one line
//! per output line; a line longer than [`MAX_LINE`] (or cut by the end of a stream)
//! is split into `P`artial records ending with a `F`ull one.

use std::time::{SystemTime, UNIX_EPOCH};

/// The longest content one record carries, as the kubelet and CRI-O split lines.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// `2026-11-28T08:46:04.123456789Z`, the RFC 3339 form with nanoseconds the kubelet parses.
pub(crate) fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Splits a stream's bytes into CRI log records. Feed it chunks as they come;
/// `finish` flushes a last unterminated line as a partial record.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Appends records for every complete line (and every full 16 KiB piece) of
    /// `chunk` to `out`, keeping the rest for the next chunk.
    pub(crate) fn push(&mut self, chunk: &[u8], now: SystemTime, out: &mut Vec<u8>) {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i <= MAX_LINE => {
                    record(self.stream, "F", &rest[..i], now, out);
                    start += i + 1;
                }
                _ if rest.len() >= MAX_LINE => {
                    record(self.stream, "P", &rest[..MAX_LINE], now, out);
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
    }

    /// The stream ended: an unterminated last line becomes a partial record.
    pub(crate) fn finish(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        if !self.pending.is_empty() {
            record(self.stream, "P", &self.pending, now, out);
            self.pending.clear();
        }
    }
}

fn record(stream: Stream, tag: &str, content: &[u8], now: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(timestamp(now).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        let t = UNIX_EPOCH + Duration::new(1_795_855_564, 5);
        assert_eq!(timestamp(t), "2026-11-28T08:46:04.000000005Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(timestamp(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn lines_are_full_long_lines_partial() {
        let now = UNIX_EPOCH;
        let ts = timestamp(now);
        let mut s = LineSplitter::new(Stream::Stderr);
        let mut out = Vec::new();
        s.push(b"hel", now, &mut out);
        assert!(out.is_empty());
        s.push(b"lo\nworld\nte", now, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{ts} stderr F hello\n{ts} stderr F world\n")
        );
        out.clear();
        s.finish(now, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), format!("{ts} stderr P te\n"));

        let mut s = LineSplitter::new(Stream::Stdout);
        let mut out = Vec::new();
        let long = vec![b'x'; MAX_LINE + 10];
        s.push(&long, now, &mut out);
        s.push(b"\n", now, &mut out);
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&format!("{ts} stdout P xxx")));
        assert_eq!(lines[0].len(), ts.len() + " stdout P ".len() + MAX_LINE);
        assert_eq!(lines[1], format!("{ts} stdout F {}", "x".repeat(10)));
    }
}
