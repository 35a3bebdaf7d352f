//! A SPDY/3.1 client for the streaming tests, written from the protocol's
//! description (SPDY/3 draft, apimachinery's httpstream handshake): it upgrades an
//! HTTP/1.1 connection, opens streams with header blocks compressed against the
//! SPDY/3 dictionary, and reads frames back. Sequential: one request at a time.

use std::collections::{BTreeMap, BTreeSet};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a session left on each stream.
#[derive(Debug, Default)]
pub struct Collected {
    pub data: BTreeMap<u32, Vec<u8>>,
    pub fin: BTreeSet<u32>,
    pub reset: BTreeSet<u32>,
    pub go_away: bool,
}

impl Collected {
    pub fn text(&self, stream: u32) -> String {
        self.data
            .get(&stream)
            .map(|d| String::from_utf8_lossy(d).to_string())
            .unwrap_or_default()
    }
}

/// A frame as the client sees it.
#[derive(Debug)]
enum Incoming {
    Data { id: u32, fin: bool, data: Vec<u8> },
    Reply { id: u32 },
    Reset { id: u32 },
    GoAway,
    Other,
}

#[derive(Debug)]
pub struct SpdyClient {
    tcp: TcpStream,
    deflate: Compress,
    inflate: Decompress,
    next_id: u32,
    /// Frames of other streams read while waiting for a reply.
    pending: Collected,
    /// The protocol the server chose (`X-Stream-Protocol-Version`).
    pub protocol: String,
}

/// The SPDY/3 dictionary: length-prefixed words, then a run of fragments.
fn dictionary() -> Vec<u8> {
    let words = "options head post put delete trace accept accept-charset accept-encoding \
        accept-language accept-ranges age allow authorization cache-control connection \
        content-base content-encoding content-language content-length content-location \
        content-md5 content-range content-type date etag expect expires from host if-match \
        if-modified-since if-none-match if-range if-unmodified-since last-modified location \
        max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after \
        server te trailer transfer-encoding upgrade user-agent vary via warning \
        www-authenticate method get status |200 OK| version HTTP/1.1 url public set-cookie \
        keep-alive origin";
    let mut out = Vec::new();
    // "200 OK" is the one word with a space in it.
    for word in words.split('|').enumerate().flat_map(|(i, part)| {
        if i % 2 == 1 {
            vec![part.to_string()]
        } else {
            part.split_whitespace().map(str::to_string).collect()
        }
    }) {
        out.extend((word.len() as u32).to_be_bytes());
        out.extend(word.as_bytes());
    }
    out.extend(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
        203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request\
        401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented\
        503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 \
        Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
        application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=\
        gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
            .as_bytes(),
    );
    out
}

impl SpdyClient {
    /// Upgrades `url` (`http://host:port/path`) offering `protocols`; `Err` holds the
    /// status line, headers and body of a refused upgrade.
    pub async fn connect(url: &str, protocols: &[&str]) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut tcp = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
        );
        for p in protocols {
            request.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // The response head, byte by byte: nothing after it may be consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if tcp.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!(
                    "connection closed: {}",
                    String::from_utf8_lossy(&head)
                ));
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            let mut body = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                tcp.read_to_end(&mut body),
            )
            .await;
            return Err(format!("{head}{}", String::from_utf8_lossy(&body)));
        }
        let protocol = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-stream-protocol-version")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(&dictionary()).expect("dictionary");
        Ok(Self {
            tcp,
            deflate,
            inflate: Decompress::new(true),
            next_id: 1,
            pending: Collected::default(),
            protocol,
        })
    }

    fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            raw.extend((k.len() as u32).to_be_bytes());
            raw.extend(k.as_bytes());
            raw.extend((v.len() as u32).to_be_bytes());
            raw.extend(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 1024);
        self.deflate
            .compress_vec(&raw, &mut out, FlushCompress::Sync)
            .expect("deflate");
        out
    }

    async fn control(&mut self, kind: u16, flags: u8, payload: &[u8]) {
        let mut frame = vec![0x80, 0x03];
        frame.extend(kind.to_be_bytes());
        frame.push(flags);
        frame.extend(&(payload.len() as u32).to_be_bytes()[1..]);
        frame.extend(payload);
        self.tcp.write_all(&frame).await.expect("write frame");
    }

    /// Opens a stream (SYN_STREAM, `fin` = half-closed at once) and waits for the
    /// server's SYN_REPLY (or its reset: `None`).
    pub async fn open(&mut self, headers: &[(&str, &str)], fin: bool) -> Option<u32> {
        let id = self.next_id;
        self.next_id += 2;
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend(0u32.to_be_bytes());
        payload.extend([0, 0]);
        let block = self.header_block(headers);
        payload.extend(block);
        self.control(1, u8::from(fin), &payload).await;
        loop {
            match self.read().await? {
                Incoming::Reply { id: r } if r == id => return Some(id),
                Incoming::Reset { id: r } if r == id => return None,
                Incoming::Data { id: s, fin, data } => {
                    self.pending.data.entry(s).or_default().extend(data);
                    if fin {
                        self.pending.fin.insert(s);
                    }
                }
                Incoming::Reset { id: s } => {
                    self.pending.reset.insert(s);
                }
                other => panic!("unexpected frame while opening stream {id}: {other:?}"),
            }
        }
    }

    pub async fn send(&mut self, id: u32, data: &[u8], fin: bool) {
        let mut frame = id.to_be_bytes().to_vec();
        frame.push(u8::from(fin));
        frame.extend(&(data.len() as u32).to_be_bytes()[1..]);
        frame.extend(data);
        self.tcp.write_all(&frame).await.expect("write data");
    }

    async fn read(&mut self) -> Option<Incoming> {
        let mut head = [0u8; 8];
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            self.tcp.read_exact(&mut head),
        )
        .await
        .ok()?
        .ok()?;
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; len];
        self.tcp.read_exact(&mut payload).await.ok()?;
        let id = |p: &[u8]| u32::from_be_bytes([p[0] & 0x7f, p[1], p[2], p[3]]);
        if head[0] & 0x80 == 0 {
            return Some(Incoming::Data {
                id: id(&head),
                fin: head[4] & 1 != 0,
                data: payload,
            });
        }
        Some(match u16::from_be_bytes([head[2], head[3]]) {
            2 => {
                // Keep the inflate stream in step with the server's.
                let mut out = Vec::with_capacity(4096);
                let block = &payload[4..];
                if let Err(e) = self
                    .inflate
                    .decompress_vec(block, &mut out, FlushDecompress::Sync)
                {
                    assert!(e.needs_dictionary().is_some(), "inflate: {e}");
                    self.inflate
                        .set_dictionary(&dictionary())
                        .expect("dictionary");
                    let used = self.inflate.total_in() as usize;
                    self.inflate
                        .decompress_vec(&block[used..], &mut out, FlushDecompress::Sync)
                        .expect("inflate");
                }
                Incoming::Reply { id: id(&payload) }
            }
            3 => Incoming::Reset { id: id(&payload) },
            7 => Incoming::GoAway,
            _ => Incoming::Other,
        })
    }

    /// Reads until the server closes the connection.
    pub async fn collect(&mut self) -> Collected {
        let mut out = std::mem::take(&mut self.pending);
        while let Some(frame) = self.read().await {
            match frame {
                Incoming::Data { id, fin, data } => {
                    out.data.entry(id).or_default().extend(data);
                    if fin {
                        out.fin.insert(id);
                    }
                }
                Incoming::Reset { id } => {
                    out.reset.insert(id);
                }
                Incoming::GoAway => out.go_away = true,
                Incoming::Reply { .. } | Incoming::Other => {}
            }
        }
        out
    }

    /// Reads until stream `id` is finished or reset (other streams' data kept).
    pub async fn collect_stream(&mut self, id: u32) -> Collected {
        let mut out = std::mem::take(&mut self.pending);
        while !out.fin.contains(&id) && !out.reset.contains(&id) {
            match self.read().await {
                Some(Incoming::Data { id: s, fin, data }) => {
                    out.data.entry(s).or_default().extend(data);
                    if fin {
                        out.fin.insert(s);
                    }
                }
                Some(Incoming::Reset { id: s }) => {
                    out.reset.insert(s);
                }
                Some(Incoming::GoAway) | None => break,
                Some(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_dictionary_has_the_drafts_checksum() {
        let dict = super::dictionary();
        assert_eq!(dict.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &dict {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }
}
