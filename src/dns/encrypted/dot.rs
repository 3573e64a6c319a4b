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

/// Answers queries until the client closes, goes idle, breaks the framing, or a drain finds
/// the connection between queries.
async fn serve(
    stream: &mut TlsStream<TcpStream>,
    source: IpAddr,
    handler: &Handler,
    limits: &Limits,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<()> {
    let mut packet = Vec::new();
    let mut out = Vec::new();
    let mut frame = Vec::new();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let mut len = [0u8; 2];
        tokio::select! {
            biased;
            r = tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut len)) => match r {
                Err(_) => return Ok(()),
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(_)) => {}
            },
            () = drained(shutdown) => return Ok(()),
        }
        packet.resize(usize::from(u16::from_be_bytes(len)), 0);
        match tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut packet)).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                r?;
            }
        }
        frame.clear();
        if let Some(messages) = handler.transfer(&packet, source) {
            for message in messages {
                push_frame(&mut frame, &message);
            }
        } else if handler.handle(&packet, source, Transport::Tcp, &mut out) {
            push_frame(&mut frame, &out);
        } else {
            continue;
        }
        // One TLS write (and record) per answer, flushed so it leaves now.
        let write = async {
            stream.write_all(&frame).await?;
            stream.flush().await
        };
        match tokio::time::timeout(limits.idle_timeout, write).await {
            Err(_) => return Ok(()),
            Ok(r) => r?,
        }
    }
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
