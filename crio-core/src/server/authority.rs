//! Any `:authority` on the CRI unix socket, as containerd and CRI-O (grpc-go)
//! accept it. Some gRPC clients name the socket there: grpc-core since 1.57
//! (Python's grpcio) sends the percent-encoded path (`var%2Frun%2Fcrio%2Fcrio.sock`),
//! grpc-java the path itself. The HTTP/2 server under tonic (h2) parses `:authority`
//! as a URI authority and resets such a stream with PROTOCOL_ERROR before the
//! request is seen, with no option to relax it.
//!
//! So each connection's bytes from the client pass through [`AuthorityFix`]: every
//! header block (HEADERS and its CONTINUATIONs) is decoded with the client's HPACK
//! state and re-encoded as literals that never enter the server's dynamic table,
//! with an `:authority` that is not a URI authority replaced by `localhost` (what
//! the kubelet and crictl send; over a unix socket it carries nothing). Everything
//! else passes unchanged; bytes to the client are not touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface; anything else (the inspect endpoints'
/// HTTP/1.1) passes through untouched.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PREFACE_LEN: usize = PREFACE.len();
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Every HTTP/2 peer takes frames this large (the protocol's minimum maximum).
const MAX_FRAME: usize = 16_384;
/// What `:authority` becomes when it is not an authority.
const LOCALHOST: &[u8] = b"localhost";

/// What the connection turned out to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not enough bytes yet to tell.
    Detect,
    Http2,
    /// HTTP/1.1: nothing to rewrite.
    PassThrough,
}

/// A header block being collected across CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// A client connection whose request headers reach the server with an
/// `:authority` it can parse.
pub(super) struct AuthorityFix<S> {
    inner: S,
    decoder: loona_hpack::Decoder<'static>,
    /// Bytes read from the client, not yet whole frames.
    raw: BytesMut,
    /// Bytes ready for the server.
    ready: BytesMut,
    mode: Mode,
    pending: Option<PendingBlock>,
    eof: bool,
    rewritten: bool,
}

impl<S> std::fmt::Debug for AuthorityFix<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityFix")
            .field("raw", &self.raw.len())
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl<S> AuthorityFix<S> {
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            decoder: loona_hpack::Decoder::new(),
            raw: BytesMut::new(),
            ready: BytesMut::new(),
            mode: Mode::Detect,
            pending: None,
            eof: false,
            rewritten: false,
        }
    }

    /// Moves what can be handled from `raw` to `ready`.
    fn process(&mut self) {
        if self.mode == Mode::Detect {
            let n = self.raw.len().min(PREFACE_LEN);
            if self.raw[..n] != PREFACE[..n] || self.eof {
                self.mode = Mode::PassThrough;
            } else if n == PREFACE_LEN {
                let preface = self.raw.split_to(PREFACE_LEN);
                self.ready.extend_from_slice(&preface);
                self.mode = Mode::Http2;
            }
        }
        if self.mode == Mode::PassThrough {
            let all = self.raw.split();
            self.ready.extend_from_slice(&all);
            return;
        }
        while self.mode == Mode::Http2 && self.raw.len() >= FRAME_HEADER {
            let len = usize::from(self.raw[0]) << 16
                | usize::from(self.raw[1]) << 8
                | usize::from(self.raw[2]);
            if self.raw.len() < FRAME_HEADER + len {
                break;
            }
            let frame = self.raw.split_to(FRAME_HEADER + len);
            self.frame(&frame);
        }
        if self.eof {
            // A partial frame at the end: the server reports it.
            let rest = self.raw.split();
            self.ready.extend_from_slice(&rest);
        }
    }

    fn frame(&mut self, frame: &[u8]) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        match kind {
            HEADERS => {
                let Some(fragment) = headers_fragment(flags, payload) else {
                    return self.ready.extend_from_slice(frame);
                };
                let block = PendingBlock {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    block: fragment.to_vec(),
                };
                if flags & END_HEADERS != 0 {
                    self.emit(block);
                } else {
                    self.pending = Some(block);
                }
            }
            CONTINUATION if self.pending.as_ref().is_some_and(|p| p.stream == stream) => {
                if let Some(p) = self.pending.as_mut() {
                    p.block.extend_from_slice(payload);
                }
                if flags & END_HEADERS != 0 {
                    if let Some(block) = self.pending.take() {
                        self.emit(block);
                    }
                }
            }
            _ => self.ready.extend_from_slice(frame),
        }
    }

    /// Re-encodes a whole header block as HEADERS (and CONTINUATION) frames.
    fn emit(&mut self, block: PendingBlock) {
        let headers = match self.decoder.decode(&block.block) {
            Ok(h) => h,
            Err(e) => {
                // The server's decoder will fail on it too, and say so.
                tracing::debug!("CRI client sent an undecodable header block: {e:?}");
                let encoded = block.block;
                return self.write_frames(block.stream, block.end_stream, &encoded);
            }
        };
        let mut encoded = Vec::with_capacity(block.block.len() + 64);
        for (name, value) in &headers {
            let value: &[u8] = if name.as_slice() == b":authority"
                && hyper::http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                if !self.rewritten {
                    tracing::debug!(
                        authority = %String::from_utf8_lossy(value),
                        "CRI client's :authority is not a URI authority: served as localhost"
                    );
                    self.rewritten = true;
                }
                LOCALHOST
            } else {
                value
            };
            literal(&mut encoded, name, value);
        }
        self.write_frames(block.stream, block.end_stream, &encoded);
    }

    fn write_frames(&mut self, stream: u32, end_stream: bool, block: &[u8]) {
        // An empty block still makes one frame.
        let count = block.len().div_ceil(MAX_FRAME).max(1);
        for i in 0..count {
            let part =
                &block[(i * MAX_FRAME).min(block.len())..((i + 1) * MAX_FRAME).min(block.len())];
            let (kind, mut flags) = if i == 0 {
                (HEADERS, if end_stream { END_STREAM } else { 0 })
            } else {
                (CONTINUATION, 0)
            };
            if i + 1 == count {
                flags |= END_HEADERS;
            }
            let len = part.len();
            self.ready.put_u8((len >> 16) as u8);
            self.ready.put_u8((len >> 8) as u8);
            self.ready.put_u8(len as u8);
            self.ready.put_u8(kind);
            self.ready.put_u8(flags);
            self.ready.put_u32(stream);
            self.ready.extend_from_slice(part);
        }
    }
}

/// The header block fragment of a HEADERS payload (without padding and priority);
/// `None` when the payload is too short for what its flags say.
fn headers_fragment(flags: u8, payload: &[u8]) -> Option<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first()?);
        start += 1;
        end = end.checked_sub(pad)?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    (start <= end).then(|| &payload[start..end])
}

/// An HPACK literal header field without indexing, new name, no Huffman coding.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    string(out, name);
    string(out, value);
}

/// An HPACK string literal (H = 0, length as a 7-bit-prefix integer).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    // Writing into a Vec cannot fail.
    let _ = loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, out);
    out.extend_from_slice(s);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    if filled.is_empty() {
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(filled);
                    }
                    this.process();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = <tokio::net::UnixStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// The frames of `bytes` after the preface: (type, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        bytes = &bytes[PREFACE_LEN..];
        let mut out = Vec::new();
        while bytes.len() >= FRAME_HEADER {
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((
                bytes[3],
                bytes[4],
                stream,
                bytes[FRAME_HEADER..FRAME_HEADER + len].to_vec(),
            ));
            bytes = &bytes[FRAME_HEADER + len..];
        }
        out
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        let mut fix = AuthorityFix::new(input.as_slice());
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        out
    }

    fn request(authority: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/runtime.v1.RuntimeService/Version"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ]
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost_and_the_rest_stays() {
        // The client's encoder indexes: its second block refers to the first's
        // entries, which only our decoder knows.
        let mut encoder = loona_hpack::Encoder::new();
        let first = request(b"var%2Frun%2Fcrio%2Fcrio.sock");
        let second = request(b"/var/run/crio/crio.sock");
        let block1 = encoder.encode(first.iter().map(|(n, v)| (&n[..], &v[..])));
        let block2 = encoder.encode(second.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(HEADERS, END_HEADERS, 1, &block1));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0")); // DATA
                                                                // The second request split over HEADERS (padded, with priority) + CONTINUATION.
        let (a, b) = block2.split_at(block2.len() / 2);
        let mut padded = vec![3u8, 0, 0, 0, 0, 16];
        padded.extend_from_slice(a);
        padded.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 3, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, b));
        let out = through(input.clone()).await;
        assert_eq!(&out[..PREFACE_LEN], &input[..PREFACE_LEN]);
        let got = frames(&out);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!((got[0].0, got[2].0, got[3].0), (0x4, 0x0, HEADERS));
        let mut server = loona_hpack::Decoder::new();
        for (i, (stream, end_stream)) in [(1, false), (3, true)].into_iter().enumerate() {
            let (kind, flags, s, block) = &got[if i == 0 { 1 } else { 3 }];
            assert_eq!((*kind, *s), (HEADERS, stream));
            assert_eq!(flags & END_HEADERS, END_HEADERS);
            assert_eq!(flags & END_STREAM != 0, end_stream);
            assert_eq!(flags & (PADDED | PRIORITY), 0);
            let headers = server.decode(block).expect("the server decodes it");
            assert_eq!(headers, request(b"localhost"), "request {i}");
        }
    }

    #[tokio::test]
    async fn a_good_authority_and_other_frames_pass_unchanged_in_meaning() {
        let mut encoder = loona_hpack::Encoder::new();
        let headers = request(b"localhost");
        let block = encoder.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        input.extend(frame(0x8, 0, 0, &[0, 0, 1, 0])); // WINDOW_UPDATE
        let out = through(input).await;
        let got = frames(&out);
        assert_eq!(got[1], (0x8, 0, 0, vec![0, 0, 1, 0]));
        let decoded = loona_hpack::Decoder::new()
            .decode(&got[0].3)
            .expect("decode");
        assert_eq!(decoded, headers);
    }

    #[tokio::test]
    async fn http1_passes_untouched() {
        let request = b"GET /info HTTP/1.1\r\nHost: /var/run/crio/crio.sock\r\n\r\n".to_vec();
        assert_eq!(through(request.clone()).await, request);
        assert_eq!(through(b"PRI".to_vec()).await, b"PRI");
    }

    #[tokio::test]
    async fn a_large_block_is_split_into_continuations() {
        let mut headers = request(b"localhost");
        headers.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
        let block =
            loona_hpack::Encoder::new().encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
        let mut input = PREFACE.to_vec();
        for (i, chunk) in block.chunks(10_000).enumerate() {
            let last = (i + 1) * 10_000 >= block.len();
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            input.extend(frame(kind, if last { END_HEADERS } else { 0 }, 1, chunk));
        }
        let got = frames(&through(input).await);
        assert!(got.len() >= 3);
        assert!(got.iter().all(|f| f.3.len() <= MAX_FRAME));
        let mut block = Vec::new();
        for f in &got {
            block.extend_from_slice(&f.3);
        }
        assert_eq!(got.last().map(|f| f.1 & END_HEADERS), Some(END_HEADERS));
        assert_eq!(
            loona_hpack::Decoder::new().decode(&block).expect("decode"),
            headers
        );
    }
}
