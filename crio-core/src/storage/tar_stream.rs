//! The byte stream under the tar parser, with the end-of-archive rules of Go's
//! `archive/tar` (which containerd and CRI-O unpack with).
//!
//! Real layers do not always end the way the tar format says: Debian's `umoci` 0.4
//! stops right after the last entry's data, with neither the padding to 512 bytes
//! nor the two zero blocks. Go's reader takes a stream that ends at an entry
//! boundary, inside the padding after the last entry's data, or after one zero
//! block; it refuses one that ends inside a header or inside an entry's data, and a
//! zero block followed by anything but a second zero block. The tar crate refuses a
//! missing padding ("unexpected EOF during skip") and stops at the first zero block,
//! so this reader sits under it: it counts bytes, supplies the missing padding (and
//! only that) as zeros, and turns an end inside an entry's data into an error that
//! says where. [`check_end`] applies Go's rule for what follows the first
//! zero block.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

const BLOCK: u64 = 512;

/// Where the parser is, shared between the reader (owned by the tar crate) and the
/// unpack loop that tells it where each entry's data ends.
#[derive(Debug, Default)]
pub(super) struct Position {
    /// Bytes of the real stream read so far.
    offset: Cell<u64>,
    /// Where the current entry's data ends; the padding runs to the next block.
    data_end: Cell<u64>,
    /// The real stream has ended (zeros may still be supplied as padding).
    ended: Cell<bool>,
}

impl Position {
    /// Bytes read so far: where an error happened.
    pub(super) fn offset(&self) -> u64 {
        self.offset.get()
    }

    /// The entry the parser just returned has `data_len` bytes of data starting here.
    pub(super) fn entry_data(&self, data_len: u64) {
        self.data_end
            .set(self.offset.get().saturating_add(data_len));
    }

    fn padding_end(&self) -> u64 {
        self.data_end.get().div_ceil(BLOCK).saturating_mul(BLOCK)
    }
}

/// A layer's uncompressed stream, as the tar parser reads it.
#[derive(Debug)]
pub(super) struct TarStream<R> {
    inner: R,
    position: Rc<Position>,
}

impl<R: Read> TarStream<R> {
    pub(super) fn new(inner: R) -> (Self, Rc<Position>) {
        let position = Rc::new(Position::default());
        (
            Self {
                inner,
                position: Rc::clone(&position),
            },
            position,
        )
    }
}

/// After the parser stopped at its first zero block: what follows must be the end
/// of the stream or a second zero block (the rest is never read as tar).
pub(super) fn check_end(position: &Position, reader: &mut impl Read) -> io::Result<()> {
    if position.ended.get() {
        return Ok(());
    }
    let mut block = [0u8; BLOCK as usize];
    let mut filled = 0;
    while filled < block.len() {
        match reader.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    match filled {
        0 => Ok(()),
        n if n < block.len() => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ends inside the end-of-archive blocks",
        )),
        _ if block.iter().all(|&b| b == 0) => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a zero block is followed by data: not an end-of-archive marker",
        )),
    }
}

impl<R: Read> Read for TarStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let p = &self.position;
        let offset = p.offset.get();
        let n = if p.ended.get() {
            0
        } else {
            self.inner.read(buf)?
        };
        if n > 0 || buf.is_empty() {
            p.offset.set(offset + n as u64);
            return Ok(n);
        }
        p.ended.set(true);
        if offset < p.data_end.get() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the stream ends inside an entry's data ({} of its bytes missing)",
                    p.data_end.get() - offset
                ),
            ));
        }
        // Inside the padding after the data: supply it, as Go's reader forgives it.
        let missing = p.padding_end().saturating_sub(offset);
        let n = usize::try_from(missing)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        buf[..n].fill(0);
        p.offset.set(offset + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(stream: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        stream.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn missing_padding_is_supplied_as_zeros_and_nothing_more() {
        let data = [7u8; 512 + 9];
        let (mut s, pos) = TarStream::new(&data[..]);
        let mut header = [0u8; 512];
        s.read_exact(&mut header).expect("header");
        pos.entry_data(9);
        let rest = read_all(&mut s).expect("data and padding");
        assert_eq!(rest.len(), 512);
        assert_eq!(&rest[..9], &[7u8; 9]);
        assert!(rest[9..].iter().all(|&b| b == 0));
        assert_eq!(pos.offset(), 1024);
        // No more than the padding: the next header read sees the end.
        assert_eq!(s.read(&mut [0u8; 16]).expect("end"), 0);
    }

    #[test]
    fn an_end_inside_the_data_is_an_error_that_says_so() {
        let data = [7u8; 512 + 4];
        let (mut s, pos) = TarStream::new(&data[..]);
        let mut header = [0u8; 512];
        s.read_exact(&mut header).expect("header");
        pos.entry_data(9);
        let err = read_all(&mut s).expect_err("truncated data");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("5 of its bytes missing"), "{err}");
        assert_eq!(pos.offset(), 516);
    }

    #[test]
    fn an_end_at_a_block_boundary_supplies_nothing() {
        let data = [1u8; 1024];
        let (mut s, pos) = TarStream::new(&data[..]);
        pos.entry_data(0);
        assert_eq!(read_all(&mut s).expect("all").len(), 1024);
    }

    #[test]
    fn what_may_follow_the_first_zero_block() {
        let ok = |rest: &[u8]| {
            let (mut s, pos) = TarStream::new(rest);
            check_end(&pos, &mut s)
        };
        ok(&[]).expect("end of stream");
        ok(&[0u8; 512]).expect("second zero block");
        ok(&[0u8; 2048]).expect("more zeros after the second block");
        assert_eq!(
            ok(&[0u8; 100]).expect_err("partial").kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut data = [0u8; 512];
        data[3] = 1;
        assert_eq!(
            ok(&data).expect_err("data").kind(),
            io::ErrorKind::InvalidData
        );
    }
}
