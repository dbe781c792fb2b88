//! WebSocket (RFC 6455), server side, as the Kubernetes channel protocols use it: every
//! binary message starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error,
//! 4 resize); in `v5.channel.k8s.io` the message `[255, ch]` closes channel `ch`.
//! Client frames must be masked; messages over [`MAX_MESSAGE`] end the connection.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const MAX_MESSAGE: usize = 1 << 20;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// SHA-1 (FIPS 180-4), only for the handshake's `Sec-WebSocket-Accept`.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(sha1(format!("{key}{GUID}").as_bytes()))
}

enum Out {
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    Close,
}

/// Sends messages; cloned freely. The connection closes when the last one is dropped
/// or [`Writer::close`] is called.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Out>,
}

impl Writer {
    /// One binary message: the channel byte, then `data`.
    pub async fn send(&self, channel: u8, data: &[u8]) -> bool {
        let mut m = Vec::with_capacity(1 + data.len());
        m.push(channel);
        m.extend_from_slice(data);
        self.tx.send(Out::Binary(m)).await.is_ok()
    }

    pub async fn close(&self) {
        let _ = self.tx.send(Out::Close).await;
    }
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n < 65536 => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// Start the reader and writer on an upgraded socket: whole messages (binary or
/// text) arrive on the receiver, which ends when the peer closes or misbehaves.
pub fn start(sock: TcpStream, early: Vec<u8>) -> (Writer, mpsc::Receiver<Vec<u8>>) {
    let (rd, mut wr) = sock.into_split();
    let (tx, mut out) = mpsc::channel::<Out>(64);
    let (mtx, messages) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(m) = out.recv().await {
            let (bytes, last) = match m {
                Out::Binary(b) => (frame(2, &b), false),
                Out::Pong(b) => (frame(10, &b), false),
                Out::Close => (frame(8, &1000u16.to_be_bytes()), true),
            };
            if wr.write_all(&bytes).await.is_err() || last {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let writer = Writer { tx };
    let pongs = writer.clone();
    tokio::spawn(async move {
        let mut rd = std::io::Cursor::new(early).chain(rd);
        if let Err(e) = read_loop(&mut rd, &pongs, &mtx).await {
            tracing::debug!(error = %e, "WebSocket connection ended");
        }
    });
    (writer, messages)
}

async fn read_loop(
    rd: &mut (impl AsyncRead + Unpin),
    w: &Writer,
    messages: &mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut message: Vec<u8> = Vec::new();
    loop {
        let mut h = [0u8; 2];
        rd.read_exact(&mut h).await?;
        let (fin, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x0f, h[1] & 0x80 != 0);
        if h[0] & 0x70 != 0 {
            return Err(bad("reserved bits set"));
        }
        if !masked {
            return Err(bad("client frames must be masked"));
        }
        let len = match h[1] & 0x7f {
            126 => rd.read_u16().await? as usize,
            127 => usize::try_from(rd.read_u64().await?).unwrap_or(usize::MAX),
            n => n as usize,
        };
        if len > MAX_MESSAGE || message.len() + len > MAX_MESSAGE {
            return Err(bad("message too large"));
        }
        let mut mask = [0u8; 4];
        rd.read_exact(&mut mask).await?;
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match opcode {
            // Continuation, text, binary.
            0..=2 => {
                message.extend_from_slice(&payload);
                if fin && messages.send(std::mem::take(&mut message)).await.is_err() {
                    return Ok(());
                }
            }
            8 => {
                w.close().await;
                return Ok(());
            }
            9 => {
                let _ = w.tx.send(Out::Pong(payload)).await;
            }
            10 => {}
            _ => return Err(bad("unknown opcode")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_and_the_rfc_6455_example() {
        let hex: String = sha1(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = vec![b'a'; 1000];
        let hex: String = sha1(&long).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "291e9a6c66994949b57ba5e650361e98fc36b1ba");
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame(2, &[1, 2]), [0x82, 2, 1, 2]);
        assert_eq!(&frame(2, &[0; 300])[..4], &[0x82, 126, 1, 44]);
        assert_eq!(
            &frame(2, &vec![0; 70000])[..10],
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
    }
}
