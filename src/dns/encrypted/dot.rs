//! DNS over TLS (RFC 7858): TLS over TCP, then the TCP framing of RFC 7766 (a 2-byte length
//! before each message). Queries on a connection are answered in order, as they arrive
//! (pipelining); zone transfers from `--allow-transfer` sources work as over TCP (RFC 9103).
//!
//! Owns: one connection's read/answer/write loop. Must never: wait without the idle timeout,
//! or answer except through the handler.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{Limits, drained, spawn_tls_listener};
use crate::dns::handler::Handler;
use crate::dns::metrics::Transport;

/// Serves DoT on `listener` until a drain; see [`super::spawn_tls_listener`].
pub fn spawn(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handler: Arc<Handler>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    spawn_tls_listener(
        listener,
        acceptor,
        handler,
        limits,
        shutdown,
        |stream, source, handler, limits, mut shutdown| async move {
            let mut stream = stream;
            if let Err(e) = serve(&mut stream, source, &handler, &limits, &mut shutdown).await {
                tracing::debug!(%source, error = %e, "dot connection ended");
            }
            // close_notify, best effort: the client may be gone already.
            let _ = tokio::time::timeout(limits.idle_timeout, stream.shutdown()).await;
        },
    )
}

/// Answers queries until the client closes, goes idle, takes longer than the idle timeout to
/// send one message, or a drain finds the connection between queries.
///
/// Reads as much as the connection has, answers every complete query in it in order, and
/// writes the answers in one TLS write: pipelined queries cost one record and one flush per
/// batch instead of per answer.
async fn serve(
    stream: &mut TlsStream<TcpStream>,
    source: IpAddr,
    handler: &Handler,
    limits: &Limits,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<()> {
    let mut inbuf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut batch = Vec::new();
    // When the message being read must be complete (set by its first byte).
    let mut message_deadline = None;
    loop {
        // Answer every complete message read so far.
        let mut used = 0;
        batch.clear();
        while let Some(packet) = next_message(inbuf.get(used..).unwrap_or_default()) {
            used += 2 + packet.len();
            if let Some(messages) = handler.transfer(packet, source) {
                for message in messages {
                    push_frame(&mut batch, &message);
                }
            } else if handler.handle(packet, source, Transport::Tcp, &mut out) {
                push_frame(&mut batch, &out);
            }
        }
        inbuf.drain(..used);
        // A partial message left over: its clock starts when it began (this read if the
        // previous message ended in it).
        if inbuf.is_empty() {
            message_deadline = None;
        } else if used > 0 || message_deadline.is_none() {
            message_deadline = Some(tokio::time::Instant::now() + limits.idle_timeout);
        }
        if !batch.is_empty() {
            let write = async {
                stream.write_all(&batch).await?;
                stream.flush().await
            };
            // A client that does not read its answers is idle too.
            match tokio::time::timeout(limits.idle_timeout, write).await {
                Err(_) => return Ok(()),
                Ok(r) => r?,
            }
        }
        // Between queries, a drain closes the connection; a query begun is finished first.
        if inbuf.is_empty() && *shutdown.borrow() {
            return Ok(());
        }
        inbuf.reserve(READ_CHUNK);
        let n = if let Some(deadline) = message_deadline {
            // Part of a message: the rest must come within the idle timeout of its first
            // byte, so dripping bytes buys nothing.
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut inbuf)).await {
                Err(_) => return Ok(()),
                Ok(r) => r?,
            }
        } else {
            tokio::select! {
                biased;
                r = tokio::time::timeout(limits.idle_timeout, stream.read_buf(&mut inbuf)) => match r {
                    Err(_) => return Ok(()),
                    Ok(r) => r?,
                },
                () = drained(shutdown) => return Ok(()),
            }
        };
        if n == 0 {
            return Ok(());
        }
    }
}

/// Bytes read per call at least (TLS records are up to 16 KiB).
const READ_CHUNK: usize = 16 * 1024;

/// The first complete length-prefixed message of `buf`, if it holds one.
fn next_message(buf: &[u8]) -> Option<&[u8]> {
    let (len, rest) = buf.split_first_chunk::<2>()?;
    rest.get(..usize::from(u16::from_be_bytes(*len)))
}

/// Appends `message` with its 2-byte length (messages never exceed 65,535 bytes).
fn push_frame(frame: &mut Vec<u8>, message: &[u8]) {
    frame.extend_from_slice(
        &u16::try_from(message.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::next_message;

    #[test]
    fn next_message_takes_complete_frames_only() {
        assert_eq!(next_message(b""), None);
        assert_eq!(next_message(b"\x00"), None);
        assert_eq!(next_message(b"\x00\x03ab"), None);
        assert_eq!(next_message(b"\x00\x03abcde"), Some(&b"abc"[..]));
        assert_eq!(next_message(b"\x00\x00"), Some(&b""[..]));
    }
}
