//! One upgraded SPDY/3.1 connection, server side: a reader task turns frames into
//! [`Event`]s (replying to each SYN_STREAM and PING itself, as spdystream servers do),
//! a writer task owns the compressor and writes the frames [`Sender`]s queue.
//!
//! Flow control: berth returns WINDOW_UPDATEs for what it received, but does not hold
//! its own sending to the peer's window: client-go's SPDY (spdystream) never sends
//! WINDOW_UPDATE, and kubelet's streaming server does not wait for one either.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::spdy::{self, Frame, Headers};

/// The largest data frame berth sends.
const CHUNK: usize = 32 << 10;

#[derive(Debug)]
pub enum Event {
    /// The peer opened a stream (already answered with SYN_REPLY).
    Stream {
        id: u32,
        headers: Headers,
    },
    Data {
        id: u32,
        data: Vec<u8>,
        fin: bool,
    },
    Reset {
        id: u32,
    },
    /// EOF, GOAWAY, or a protocol error: the connection is over.
    Closed,
}

/// Queues frames for the writer task; cloned freely.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Frame>,
    /// The last stream the peer opened that berth accepted (for GOAWAY).
    last_id: Arc<AtomicU32>,
}

impl Sender {
    /// GOAWAY with the last accepted stream (status 0 OK, 1 PROTOCOL_ERROR): the
    /// writer sends nothing after it.
    pub async fn goaway(&self, status: u32) -> bool {
        self.frame(Frame::GoAway {
            last_good_stream_id: self.last_id.load(Ordering::SeqCst),
            status,
        })
        .await
    }

    /// Queue a frame; false once the connection is gone.
    pub async fn frame(&self, f: Frame) -> bool {
        self.tx.send(f).await.is_ok()
    }

    /// Send `data` on stream `id` in chunks; with `fin`, the last one closes the stream.
    pub async fn data(&self, id: u32, data: &[u8], fin: bool) -> bool {
        let mut chunks = data.chunks(CHUNK).peekable();
        if chunks.peek().is_none() {
            return self
                .frame(Frame::Data {
                    stream_id: id,
                    flags: if fin { spdy::FLAG_FIN } else { 0 },
                    data: Vec::new(),
                })
                .await;
        }
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            let flags = if fin && last { spdy::FLAG_FIN } else { 0 };
            if !self
                .frame(Frame::Data {
                    stream_id: id,
                    flags,
                    data: c.to_vec(),
                })
                .await
            {
                return false;
            }
        }
        true
    }

    pub async fn reset(&self, id: u32, status: u32) -> bool {
        self.frame(Frame::RstStream {
            stream_id: id,
            status,
        })
        .await
    }
}

/// The value of header `name` (names are lowercase in SPDY).
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Start the reader and writer tasks on `sock`; `early` are bytes already read past
/// the HTTP request. The writer ends (and shuts the socket) when every Sender is gone.
pub fn start(sock: TcpStream, early: Vec<u8>) -> Session {
    let (rd, mut wr) = sock.into_split();
    let (tx, mut frames) = mpsc::channel::<Frame>(64);
    let (etx, events) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut enc = spdy::Encoder::default();
        while let Some(f) = frames.recv().await {
            let goaway = matches!(f, Frame::GoAway { .. });
            if wr.write_all(&enc.encode(&f)).await.is_err() {
                break;
            }
            if goaway {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let sender = Sender {
        tx,
        last_id: Arc::new(AtomicU32::new(0)),
    };
    let replies = sender.clone();
    let reader = tokio::spawn(async move {
        let mut rd = std::io::Cursor::new(early).chain(rd);
        if let Err(e) = read_loop(&mut rd, &replies, &etx).await {
            tracing::debug!(error = %e, "SPDY connection ended");
            let _ = replies.goaway(1).await;
        }
        let _ = etx.send(Event::Closed).await;
    });
    Session {
        tx: sender,
        events,
        _reader: AbortOnDrop(reader),
    }
}

/// An upgraded connection: send with `tx`, receive `events`. Dropping it stops reading
/// (the socket closes once the writer has sent what was queued).
pub struct Session {
    pub tx: Sender,
    pub events: mpsc::Receiver<Event>,
    _reader: AbortOnDrop,
}

/// Stops the reader task when the session goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Spdy(#[from] spdy::SpdyError),
}

async fn read_loop(
    rd: &mut (impl AsyncRead + Unpin),
    out: &Sender,
    events: &mpsc::Sender<Event>,
) -> Result<(), ReadError> {
    let mut dec = spdy::Decoder::default();
    let mut last_id = 0u32;
    loop {
        let mut head = [0u8; 8];
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let mut body = vec![0u8; spdy::frame_len(&head)?];
        rd.read_exact(&mut body).await?;
        let ev = match dec.decode(&head, &body)? {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                // Client streams are odd and increasing (SPDY/3.1 section 2.3.2).
                if stream_id % 2 == 0 || stream_id <= last_id {
                    out.reset(stream_id, spdy::RST_PROTOCOL_ERROR).await;
                    continue;
                }
                last_id = stream_id;
                out.last_id.store(stream_id, Ordering::SeqCst);
                out.frame(Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Vec::new(),
                })
                .await;
                Event::Stream {
                    id: stream_id,
                    headers,
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if !data.is_empty() {
                    for id in [stream_id, 0] {
                        out.frame(Frame::WindowUpdate {
                            stream_id: id,
                            delta: data.len() as u32,
                        })
                        .await;
                    }
                }
                Event::Data {
                    id: stream_id,
                    data,
                    fin: flags & spdy::FLAG_FIN != 0,
                }
            }
            // Odd ids are the client's pings: echo them (section 2.6.5).
            Frame::Ping { id } if id % 2 == 1 => {
                out.frame(Frame::Ping { id }).await;
                continue;
            }
            Frame::RstStream { stream_id, .. } => Event::Reset { id: stream_id },
            Frame::GoAway { .. } => return Ok(()),
            Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Ping { .. }
            | Frame::SynReply { .. }
            | Frame::Unknown { .. } => continue,
        };
        if events.send(ev).await.is_err() {
            return Ok(());
        }
    }
}
