//! `-t`: the pty master arrives over a console socket and is proxied to our stdio; the
//! code lives in the runtime's foreground module, shared with runc-style `run`/`exec`.

pub use berth_runtime::foreground::{copy_winsize, proxy, ConsoleSocket, RawMode};
