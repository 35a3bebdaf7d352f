//! The server side of a SPDY/3.1 connection as spdystream runs it: the client opens
//! streams (odd ids), the server replies to each at once, data has no flow control,
//! the client's PINGs are echoed. One task reads frames and routes them to streams;
//! one task writes, so frames (and the header zlib stream) keep their order.

use std::collections::HashMap;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::frame::{self, Frame, HeaderReader, HeaderWriter, Headers, CANCEL, MAX_DATA};

/// What arrives on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamEvent {
    Data(Vec<u8>),
    /// The client half-closed the stream (FIN).
    Fin,
    /// The client reset the stream.
    Reset,
}

/// A stream the client opened; its events arrive on `events` (closed when the
/// connection ends).
#[derive(Debug)]
pub(crate) struct IncomingStream {
    pub id: u32,
    pub headers: Headers,
    pub events: mpsc::UnboundedReceiver<StreamEvent>,
}

/// Sends frames on the connection; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SpdyConn {
    /// `None` closes the connection after what is queued.
    out: mpsc::UnboundedSender<Option<Frame>>,
    closed: watch::Receiver<bool>,
}

/// Starts the reader and writer tasks on an upgraded connection.
pub(crate) fn start<IO>(io: IO) -> (SpdyConn, mpsc::UnboundedReceiver<IncomingStream>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read_half, mut write_half) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Option<Frame>>();
    let (accept_tx, accept_rx) = mpsc::unbounded_channel();
    let (closed_tx, closed_rx) = watch::channel(false);

    tokio::spawn(async move {
        let mut headers = HeaderWriter::default();
        while let Some(Some(frame)) = out_rx.recv().await {
            let bytes = frame::encode(&frame, &mut headers);
            if write_half.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write_half.shutdown().await;
    });

    let echo = out_tx.clone();
    tokio::spawn(async move {
        let mut headers = HeaderReader::default();
        let mut streams: HashMap<u32, mpsc::UnboundedSender<StreamEvent>> = HashMap::new();
        let mut last_id = 0u32;
        loop {
            let frame = match frame::read(&mut read_half, &mut headers).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("{e}");
                    break;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    fin,
                    headers,
                } => {
                    if stream_id == 0 || stream_id <= last_id {
                        let _ = echo.send(Some(Frame::RstStream {
                            stream_id,
                            status: frame::PROTOCOL_ERROR,
                        }));
                        continue;
                    }
                    last_id = stream_id;
                    let (tx, rx) = mpsc::unbounded_channel();
                    if fin {
                        let _ = tx.send(StreamEvent::Fin);
                    }
                    streams.insert(stream_id, tx);
                    let _ = accept_tx.send(IncomingStream {
                        id: stream_id,
                        headers,
                        events: rx,
                    });
                }
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    if let Some(tx) = streams.get(&stream_id) {
                        if !data.is_empty() {
                            let _ = tx.send(StreamEvent::Data(data));
                        }
                        if fin {
                            let _ = tx.send(StreamEvent::Fin);
                        }
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(tx) = streams.remove(&stream_id) {
                        let _ = tx.send(StreamEvent::Reset);
                    }
                }
                // The client's pings (odd ids) come back unchanged.
                Frame::Ping { id } if id % 2 == 1 => {
                    let _ = echo.send(Some(Frame::Ping { id }));
                }
                Frame::GoAway { .. } => break,
                Frame::Ping { .. } | Frame::SynReply { .. } | Frame::Ignored { .. } => {}
            }
        }
        let _ = closed_tx.send(true);
    });

    (
        SpdyConn {
            out: out_tx,
            closed: closed_rx,
        },
        accept_rx,
    )
}

impl SpdyConn {
    fn send(&self, frame: Frame) {
        let _ = self.out.send(Some(frame));
    }

    /// Closes the connection once what is queued has been written.
    pub(crate) fn close(&self) {
        let _ = self.out.send(None);
    }

    /// Accepts a stream the client opened (an empty SYN_REPLY).
    pub(crate) fn reply(&self, stream_id: u32) {
        self.send(Frame::SynReply {
            stream_id,
            fin: false,
            headers: Vec::new(),
        });
    }

    pub(crate) fn data(&self, stream_id: u32, data: &[u8]) {
        for chunk in data.chunks(MAX_DATA) {
            self.send(Frame::Data {
                stream_id,
                fin: false,
                data: chunk.to_vec(),
            });
        }
    }

    /// Half-closes our side of a stream.
    pub(crate) fn fin(&self, stream_id: u32) {
        self.send(Frame::Data {
            stream_id,
            fin: true,
            data: Vec::new(),
        });
    }

    pub(crate) fn reset(&self, stream_id: u32) {
        self.send(Frame::RstStream {
            stream_id,
            status: CANCEL,
        });
    }

    /// GOAWAY (then [`SpdyConn::close`]).
    pub(crate) fn go_away(&self, last_good_stream_id: u32) {
        self.send(Frame::GoAway {
            last_good_stream_id,
            status: 0,
        });
    }

    /// Resolves when the client's side of the connection has ended.
    pub(crate) async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }
}
