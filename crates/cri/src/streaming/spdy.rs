//! SPDY/3.1 framing (SPDY Protocol Draft 3.1), as much as Kubernetes' streaming
//! protocols use: the control frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING,
//! GOAWAY, HEADERS and WINDOW_UPDATE, data frames, and the header blocks, which are
//! zlib-compressed with the SPDY/3 preset dictionary on one zlib stream per direction
//! (each block ends with a sync flush).
//!
//! The codec is sans-IO: [`Decoder::decode`] takes a frame's 8-byte head and body,
//! [`Encoder::encode`] returns a frame's bytes. Every length is checked before use; a
//! frame or header block larger than the limits below is an error, not an allocation.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const SETTINGS: u16 = 4;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const WINDOW_UPDATE: u16 = 9;
/// FLAG_FIN: the sender's last frame on this stream (control and data frames alike).
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// The largest frame body accepted (the 24-bit length allows 16 MiB).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest decompressed header block accepted, and the most name/value pairs.
const MAX_HEADER_BLOCK: usize = 64 << 10;
const MAX_PAIRS: u32 = 256;

/// A header block: lowercase names; several values of one name are joined by NUL.
pub type Headers = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type this codec does not know: the spec says ignore it.
    Unknown {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("SPDY: control frame version {0}, only 3 is spoken")]
    Version(u16),
    #[error("SPDY: frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("SPDY: {0} frame is truncated")]
    Truncated(&'static str),
    #[error("SPDY: header block: {0}")]
    HeaderBlock(String),
}

type Result<T> = std::result::Result<T, SpdyError>;

/// The preset dictionary of SPDY/3 header compression (draft 3, section 2.6.10.1):
/// each word with a 4-byte big-endian length, then the status codes, phrases, dates
/// and media types run together.
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: [&str; 65] = [
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
            "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
            "authorization", "cache-control", "connection", "content-base",
            "content-encoding", "content-language", "content-length", "content-location",
            "content-md5", "content-range", "content-type", "date", "etag", "expect",
            "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
            "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards",
            "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
            "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get",
            "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
            "keep-alive", "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
            "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
            "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(SpdyError::Truncated(what))
}

/// A frame's length, from its 8-byte head (checked against [`MAX_FRAME`]).
pub fn frame_len(head: &[u8; 8]) -> Result<usize> {
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(SpdyError::TooLarge(len));
    }
    Ok(len)
}

/// Reads frames: holds the receiving direction's zlib stream.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            zlib: Decompress::new(true),
        }
    }
}

impl Decoder {
    /// Inflate one header block (a sync-flushed piece of the direction's zlib stream).
    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let bad = |e: String| SpdyError::HeaderBlock(e);
        let mut out = Vec::with_capacity(1024);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(bad(format!("over {MAX_HEADER_BLOCK} bytes")));
                }
                out.reserve(out.len());
            }
            let before = self.zlib.total_in();
            let res = self
                .zlib
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.zlib.total_in() - before) as usize;
            match res {
                Ok(Status::StreamEnd) => return Err(bad("the zlib stream ended".into())),
                Ok(_) if pos == input.len() && out.len() < out.capacity() => return Ok(out),
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(id) if id == adler32(dictionary()) => {
                        self.zlib
                            .set_dictionary(dictionary())
                            .map_err(|e| bad(e.to_string()))?;
                    }
                    Some(id) => return Err(bad(format!("unknown dictionary {id:#x}"))),
                    None => return Err(bad(e.to_string())),
                },
            }
        }
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers> {
        let block = self.inflate(compressed)?;
        let n = u32_at(&block, 0, "header block")?;
        if n > MAX_PAIRS {
            return Err(SpdyError::HeaderBlock(format!("{n} pairs")));
        }
        let mut at = 4;
        let string = |at: &mut usize| -> Result<String> {
            let len = u32_at(&block, *at, "header block")? as usize;
            let s = block
                .get(*at + 4..*at + 4 + len)
                .ok_or(SpdyError::Truncated("header block"))?;
            *at += 4 + len;
            Ok(String::from_utf8_lossy(s).into_owned())
        };
        let mut out = Vec::new();
        for _ in 0..n {
            let name = string(&mut at)?;
            let value = string(&mut at)?;
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(SpdyError::HeaderBlock(format!("bad header name {name:?}")));
            }
            out.push((name, value));
        }
        Ok(out)
    }

    /// One frame from its head and its body (`frame_len(head)` bytes).
    pub fn decode(&mut self, head: &[u8; 8], body: &[u8]) -> Result<Frame> {
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            return Ok(Frame::Data {
                stream_id: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff,
                flags,
                data: body.to_vec(),
            });
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let id = |at: usize, what| Ok::<u32, SpdyError>(u32_at(body, at, what)? & 0x7fff_ffff);
        Ok(match kind {
            SYN_STREAM => {
                if body.len() < 10 {
                    return Err(SpdyError::Truncated("SYN_STREAM"));
                }
                Frame::SynStream {
                    stream_id: id(0, "SYN_STREAM")?,
                    associated_to: id(4, "SYN_STREAM")?,
                    priority: body[8] >> 5,
                    flags,
                    headers: self.headers(&body[10..])?,
                }
            }
            SYN_REPLY => Frame::SynReply {
                stream_id: id(0, "SYN_REPLY")?,
                flags,
                headers: self.headers(body.get(4..).unwrap_or_default())?,
            },
            HEADERS => Frame::Headers {
                stream_id: id(0, "HEADERS")?,
                flags,
                headers: self.headers(body.get(4..).unwrap_or_default())?,
            },
            RST_STREAM => Frame::RstStream {
                stream_id: id(0, "RST_STREAM")?,
                status: u32_at(body, 4, "RST_STREAM")?,
            },
            SETTINGS => {
                let n = u32_at(body, 0, "SETTINGS")? as usize;
                if body.len() != 4 + 8 * n {
                    return Err(SpdyError::Truncated("SETTINGS"));
                }
                let entries = (0..n)
                    .map(|i| {
                        let e = u32_at(body, 4 + 8 * i, "SETTINGS")?;
                        let v = u32_at(body, 8 + 8 * i, "SETTINGS")?;
                        Ok(((e >> 24) as u8, e & 0xff_ffff, v))
                    })
                    .collect::<Result<_>>()?;
                Frame::Settings { flags, entries }
            }
            PING => Frame::Ping {
                id: u32_at(body, 0, "PING")?,
            },
            GOAWAY => Frame::GoAway {
                last_good_stream_id: id(0, "GOAWAY")?,
                status: u32_at(body, 4, "GOAWAY").unwrap_or(0),
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                stream_id: id(0, "WINDOW_UPDATE")?,
                delta: id(4, "WINDOW_UPDATE")?,
            },
            kind => Frame::Unknown { kind },
        })
    }
}

/// The Adler-32 checksum (RFC 1950), which names a zlib preset dictionary.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// Writes frames: holds the sending direction's zlib stream.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        // Before the first byte: the stream's header then names the dictionary (FDICT).
        let _ = zlib.set_dictionary(dictionary());
        Encoder { zlib }
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

impl Encoder {
    fn headers(&mut self, headers: &Headers) -> Vec<u8> {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            for s in [k.to_ascii_lowercase().as_bytes(), v.as_bytes()] {
                block.extend_from_slice(&(s.len() as u32).to_be_bytes());
                block.extend_from_slice(s);
            }
        }
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.len() + 64);
            }
            let before = self.zlib.total_in();
            // Compressing into a Vec with room cannot fail; a failure ends the block.
            if self
                .zlib
                .compress_vec(&block[pos..], &mut out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            pos += (self.zlib.total_in() - before) as usize;
            if pos == block.len() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }

    /// The frame's bytes. Data frames over 16 MiB - 1 cannot be encoded: callers chunk.
    pub fn encode(&mut self, f: &Frame) -> Vec<u8> {
        let id = |i: u32| (i & 0x7fff_ffff).to_be_bytes();
        match f {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&id(*stream_id));
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                out
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut b = id(*stream_id).to_vec();
                b.extend_from_slice(&id(*associated_to));
                b.extend_from_slice(&[priority << 5, 0]);
                b.extend(self.headers(headers));
                control(SYN_STREAM, *flags, &b)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut b = id(*stream_id).to_vec();
                b.extend(self.headers(headers));
                control(SYN_REPLY, *flags, &b)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut b = id(*stream_id).to_vec();
                b.extend(self.headers(headers));
                control(HEADERS, *flags, &b)
            }
            Frame::RstStream { stream_id, status } => {
                let mut b = id(*stream_id).to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, &b)
            }
            Frame::Settings { flags, entries } => {
                let mut b = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, i, v) in entries {
                    b.extend_from_slice(&(((*f as u32) << 24) | (i & 0xff_ffff)).to_be_bytes());
                    b.extend_from_slice(&v.to_be_bytes());
                }
                control(SETTINGS, *flags, &b)
            }
            Frame::Ping { id } => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut b = id(*last_good_stream_id).to_vec();
                b.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, &b)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut b = id(*stream_id).to_vec();
                b.extend_from_slice(&id(*delta));
                control(WINDOW_UPDATE, 0, &b)
            }
            Frame::Unknown { kind } => control(*kind, 0, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn split(bytes: &[u8]) -> ([u8; 8], &[u8]) {
        let head: [u8; 8] = bytes[..8].try_into().unwrap();
        assert_eq!(frame_len(&head).unwrap(), bytes.len() - 8);
        (head, &bytes[8..])
    }

    #[test]
    fn the_dictionary_is_the_specs() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
        // What C zlib (Python's zlib.adler32) gives for the spec's bytes.
        assert_eq!(adler32(d), 3821447106);
    }

    /// Header blocks compressed by C zlib with the dictionary (Python's
    /// `zlib.compressobj(9, zdict=...)` + Z_SYNC_FLUSH), two blocks on one stream.
    #[test]
    fn decodes_header_blocks_compressed_by_zlib() {
        let mut d = Decoder::default();
        let one = hex("78f9e3c6a7c202a62346703a2b294a4dcc851625aca9a08006000000ffff");
        let two = hex("02651c0c2960624ec98794d1f00299b102000000ffff");
        let syn = |id: u32, block: &[u8]| {
            let mut b = id.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 0, 0, 0, 0x60, 0]);
            b.extend_from_slice(block);
            control(SYN_STREAM, 0, &b)
        };
        let f = syn(1, &one);
        let (h, b) = split(&f);
        assert_eq!(
            d.decode(&h, b).unwrap(),
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                flags: 0,
                headers: vec![("streamtype".into(), "error".into())],
            }
        );
        let f = syn(3, &two);
        let (h, b) = split(&f);
        let Frame::SynStream { headers, .. } = d.decode(&h, b).unwrap() else {
            panic!()
        };
        assert_eq!(
            headers,
            [
                ("streamtype".to_string(), "stdout".to_string()),
                ("accept".into(), "x".into())
            ]
        );
    }

    #[test]
    fn every_frame_round_trips() {
        let (mut e, mut d) = (Encoder::default(), Decoder::default());
        let hs = |v: &str| vec![("streamtype".to_string(), v.to_string())];
        let frames = [
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 7,
                flags: FLAG_FIN,
                headers: hs("stdin"),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: hs("stdout"),
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: hs("x"),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(1, 7, 65536), (0, 4, 100)],
            },
            Frame::Ping { id: 0xdead_beef },
            Frame::GoAway {
                last_good_stream_id: 7,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1 << 20,
            },
            Frame::Data {
                stream_id: 9,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
        ];
        for f in &frames {
            let bytes = e.encode(f);
            let (h, b) = split(&bytes);
            assert_eq!(&d.decode(&h, b).unwrap(), f);
        }
        // The first header block names the SPDY dictionary (FDICT) in its zlib header.
        let mut e = Encoder::default();
        let bytes = e.encode(&frames[1]);
        assert_eq!(bytes[12] & 0x0f, 8, "deflate");
        assert_ne!(bytes[13] & 0x20, 0, "FDICT");
        assert_eq!(&bytes[14..18], &adler32(dictionary()).to_be_bytes());
    }

    #[test]
    fn hostile_frames_are_errors() {
        let mut d = Decoder::default();
        // A length over the limit.
        let head = [0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff];
        assert!(matches!(frame_len(&head), Err(SpdyError::TooLarge(_))));
        // Wrong version, truncated bodies, garbage header block.
        assert_eq!(
            d.decode(&[0x80, 2, 0, 6, 0, 0, 0, 4], &[0; 4]),
            Err(SpdyError::Version(2))
        );
        assert!(d.decode(&[0x80, 3, 0, 6, 0, 0, 0, 2], &[0; 2]).is_err());
        assert!(d.decode(&[0x80, 3, 0, 1, 0, 0, 0, 4], &[0; 4]).is_err());
        assert!(d
            .decode(&[0x80, 3, 0, 2, 0, 0, 0, 8], &[0, 0, 0, 1, 1, 2, 3, 4])
            .is_err());
        assert!(d
            .decode(&[0x80, 3, 0, 4, 0, 0, 0, 8], &[0, 0, 0, 9, 0, 0, 0, 0])
            .is_err());
        // A header block claiming more bytes than it has.
        let mut e = Encoder::default();
        let mut d = Decoder::default();
        let mut block = 1u32.to_be_bytes().to_vec();
        block.extend_from_slice(&1000u32.to_be_bytes());
        let z = {
            let mut out = Vec::with_capacity(256);
            e.zlib
                .compress_vec(&block, &mut out, FlushCompress::Sync)
                .unwrap();
            out
        };
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend(z);
        let f = control(SYN_REPLY, 0, &body);
        let (h, b) = split(&f);
        assert!(matches!(d.decode(&h, b), Err(SpdyError::Truncated(_))));
        // Unknown control types are ignored, not errors.
        assert_eq!(
            d.decode(&[0x80, 3, 0, 77, 0, 0, 0, 0], &[]),
            Ok(Frame::Unknown { kind: 77 })
        );
    }
}
