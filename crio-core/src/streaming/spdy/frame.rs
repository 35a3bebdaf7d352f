//! SPDY/3 frames: big-endian, an 8-byte header (control frames `0x8003` + type;
//! data frames the stream id), flags in the top byte of the length word. Header
//! blocks (32-bit counts and lengths) are zlib-compressed with one stream per
//! direction for the whole connection, each block sync-flushed.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::dictionary::dictionary;

pub(crate) const FLAG_FIN: u8 = 0x01;

pub(crate) const SYN_STREAM: u16 = 1;
pub(crate) const SYN_REPLY: u16 = 2;
pub(crate) const RST_STREAM: u16 = 3;
pub(crate) const SETTINGS: u16 = 4;
pub(crate) const PING: u16 = 6;
pub(crate) const GOAWAY: u16 = 7;
pub(crate) const HEADERS: u16 = 8;
pub(crate) const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status CANCEL (what a reset sends).
pub(crate) const CANCEL: u32 = 5;
pub(crate) const PROTOCOL_ERROR: u32 = 1;

/// A frame's length field is 24 bits.
pub(crate) const MAX_DATA: usize = (1 << 24) - 1;

/// Header names (lower-case) and values, in order.
pub(crate) type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// SETTINGS, HEADERS and WINDOW_UPDATE: read and ignored (no flow control,
    /// as spdystream does none).
    Ignored {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

fn protocol(msg: impl Into<String>) -> FrameError {
    FrameError::Protocol(msg.into())
}

/// The outgoing header zlib stream.
pub(crate) struct HeaderWriter {
    zlib: Compress,
}

impl std::fmt::Debug for HeaderWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderWriter")
    }
}

impl Default for HeaderWriter {
    fn default() -> Self {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(dictionary())
            .expect("zlib accepts a dictionary before any input");
        Self { zlib }
    }
}

impl HeaderWriter {
    fn compress(&mut self, headers: &Headers) -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
                block.extend_from_slice(&(part.len() as u32).to_be_bytes());
                block.extend_from_slice(part);
            }
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut input = block.as_slice();
        loop {
            out.reserve(256);
            let before = self.zlib.total_in();
            // Sync flush: every block ends on a byte boundary the reader can stop at.
            let _ = self
                .zlib
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("zlib compression of memory cannot fail");
            let used = (self.zlib.total_in() - before) as usize;
            input = &input[used..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// The incoming header zlib stream.
pub(crate) struct HeaderReader {
    zlib: Decompress,
}

impl std::fmt::Debug for HeaderReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderReader")
    }
}

impl Default for HeaderReader {
    fn default() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }
}

impl HeaderReader {
    fn decompress(&mut self, data: &[u8]) -> Result<Headers, FrameError> {
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        let mut input = data;
        loop {
            out.reserve(1024);
            let before = self.zlib.total_in();
            let result = self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.zlib.total_in() - before) as usize;
            input = &input[used..];
            match result {
                Ok(Status::StreamEnd) => return Err(protocol("header zlib stream ended")),
                Ok(_) => {
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| protocol(format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(protocol(format!("header block: {e}"))),
            }
        }
        parse_headers(&out)
    }
}

fn parse_headers(block: &[u8]) -> Result<Headers, FrameError> {
    let mut rest = block;
    let take_u32 = |rest: &mut &[u8]| -> Result<u32, FrameError> {
        if rest.len() < 4 {
            return Err(protocol("truncated header block"));
        }
        let (n, tail) = rest.split_at(4);
        *rest = tail;
        Ok(u32::from_be_bytes([n[0], n[1], n[2], n[3]]))
    };
    let count = take_u32(&mut rest)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for item in &mut pair {
            let len = take_u32(&mut rest)? as usize;
            if rest.len() < len {
                return Err(protocol("truncated header block"));
            }
            let (text, tail) = rest.split_at(len);
            rest = tail;
            *item = String::from_utf8_lossy(text).into_owned();
        }
        let [name, value] = pair;
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

/// The value of header `name` (case-insensitive).
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8003u16).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

/// The frame's bytes. Header blocks go through `headers` (the connection's
/// outgoing zlib stream), so frames must be encoded in the order they are sent.
pub(crate) fn encode(frame: &Frame, headers: &mut HeaderWriter) -> Vec<u8> {
    let fin = |f: bool| if f { FLAG_FIN } else { 0 };
    match frame {
        Frame::Data {
            stream_id,
            fin: f,
            data,
        } => {
            let mut out = Vec::with_capacity(8 + data.len());
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.push(fin(*f));
            out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(data);
            out
        }
        Frame::SynStream {
            stream_id,
            fin: f,
            headers: h,
        } => {
            let mut payload = Vec::new();
            payload.extend_from_slice(&stream_id.to_be_bytes());
            payload.extend_from_slice(&0u32.to_be_bytes()); // associated stream
            payload.extend_from_slice(&[0, 0]); // priority, slot
            payload.extend(headers.compress(h));
            control(SYN_STREAM, fin(*f), &payload)
        }
        Frame::SynReply {
            stream_id,
            fin: f,
            headers: h,
        } => {
            let mut payload = stream_id.to_be_bytes().to_vec();
            payload.extend(headers.compress(h));
            control(SYN_REPLY, fin(*f), &payload)
        }
        Frame::RstStream { stream_id, status } => {
            let mut payload = stream_id.to_be_bytes().to_vec();
            payload.extend_from_slice(&status.to_be_bytes());
            control(RST_STREAM, 0, &payload)
        }
        Frame::Ping { id } => control(PING, 0, &id.to_be_bytes()),
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            let mut payload = last_good_stream_id.to_be_bytes().to_vec();
            payload.extend_from_slice(&status.to_be_bytes());
            control(GOAWAY, 0, &payload)
        }
        Frame::Ignored { kind } => control(*kind, 0, &[]),
    }
}

/// Reads one frame; `None` at a clean end of the connection.
pub(crate) async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    headers: &mut HeaderReader,
) -> Result<Option<Frame>, FrameError> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    let word = |at: usize| -> Result<u32, FrameError> {
        payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| protocol("frame too short"))
    };
    if head[0] & 0x80 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
            fin: flags & FLAG_FIN != 0,
            data: payload,
        }));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let frame = match kind {
        SYN_STREAM => {
            if payload.len() < 10 {
                return Err(protocol("SYN_STREAM too short"));
            }
            Frame::SynStream {
                stream_id: word(0)? & 0x7fff_ffff,
                fin: flags & FLAG_FIN != 0,
                headers: headers.decompress(&payload[10..])?,
            }
        }
        SYN_REPLY => Frame::SynReply {
            stream_id: word(0)? & 0x7fff_ffff,
            fin: flags & FLAG_FIN != 0,
            headers: headers.decompress(payload.get(4..).unwrap_or_default())?,
        },
        RST_STREAM => Frame::RstStream {
            stream_id: word(0)? & 0x7fff_ffff,
            status: word(4)?,
        },
        PING => Frame::Ping { id: word(0)? },
        GOAWAY => Frame::GoAway {
            last_good_stream_id: word(0)? & 0x7fff_ffff,
            status: word(4)?,
        },
        HEADERS => {
            // Keeps the zlib stream in step even though the headers are unused.
            headers.decompress(payload.get(4..).unwrap_or_default())?;
            Frame::Ignored { kind }
        }
        SETTINGS | WINDOW_UPDATE => Frame::Ignored { kind },
        other => return Err(protocol(format!("unknown control frame type {other}"))),
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut writer = HeaderWriter::default();
        let mut bytes = Vec::new();
        for f in frames {
            bytes.extend(encode(f, &mut writer));
        }
        let mut reader = HeaderReader::default();
        let mut cursor = bytes.as_slice();
        let mut out = Vec::new();
        while let Some(f) = read(&mut cursor, &mut reader).await.expect("read") {
            out.push(f);
        }
        out
    }

    #[tokio::test]
    async fn frames_round_trip_through_one_zlib_stream() {
        let headers = |t: &str| vec![("streamtype".to_string(), t.to_string())];
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                fin: false,
                headers: headers("error"),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::SynStream {
                stream_id: 3,
                fin: true,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "80".into()),
                ],
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: b"hello".to_vec(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: CANCEL,
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        assert_eq!(round_trip(&frames).await, frames);
    }

    #[test]
    fn the_first_header_block_names_the_dictionary() {
        let mut writer = HeaderWriter::default();
        let bytes = encode(
            &Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            &mut writer,
        );
        // 8-byte header, 4-byte stream id, then the zlib header: FDICT with the
        // dictionary's Adler-32.
        assert_eq!(&bytes[12..18], &[0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
        // Sync flush: the block ends on the empty stored block.
        assert!(bytes.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    }

    #[tokio::test]
    async fn unknown_control_frames_are_errors() {
        let bytes = control(10, 0, &[]);
        let mut reader = HeaderReader::default();
        let err = read(&mut bytes.as_slice(), &mut reader)
            .await
            .expect_err("unknown");
        assert!(err.to_string().contains("type 10"), "{err}");
    }
}
