//! One DNS-over-TCP connection (RFC 7766): framing, batched answers, backpressure, timeouts.
//!
//! A connection waits until its socket is readable, then, without awaiting, reads everything
//! the socket has (many pipelined queries per read), answers every complete message into one
//! buffer and hands that buffer to the socket in one write. So a busy connection costs one
//! wake-up, one read and one write per batch, not per query. The buffers are per thread
//! ([`Scratch`]), used only between two awaits, so an idle connection holds none: only a
//! partial message (or messages held back, below) and answers the socket has not taken yet
//! are kept per connection, sized to what they hold.
//!
//! Backpressure: answers the socket does not take wait in the connection, and until they are
//! written nothing more is read or answered: a client that does not read its answers stops
//! being served, holds at most one batch of answers, and is closed when it has taken nothing
//! for the idle timeout. Every connection is its own task, so none of this blocks another; a
//! connection whose read filled the buffer yields after answering it, so a client streaming
//! queries flat out shares its thread with the others a buffer at a time.
//!
//! Owns: one connection's bytes and timers. Must never: await while holding the scratch
//! buffers, read more from a client whose answers are waiting, or wait without a deadline.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::handler::{Handler, MAX_TCP_MESSAGE};
use super::metrics::Transport;
use super::server::{ConnShared, Registry, TcpLimits, drained};

/// Room for the largest frame: a 2-byte length and a 65,535-byte message, so that a read
/// always has space for at least the rest of the message it is in.
const MAX_FRAME: usize = 2 + MAX_TCP_MESSAGE;
/// Answers are handed to the socket once this many bytes are waiting, even mid-batch.
const WRITE_BATCH: usize = 64 * 1024;

/// Buffers shared by every connection served on one thread.
#[derive(Default)]
struct Scratch {
    /// Carried-over bytes, then what one read returned.
    input: Vec<u8>,
    /// One answer, as the handler writes it.
    answer: Vec<u8>,
    /// The batch's framed answers.
    output: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The next complete message at the start of `data` and the bytes its frame takes, or None
/// when `data` holds only part of one (or nothing).
pub(crate) fn next_frame(data: &[u8]) -> Option<(&[u8], usize)> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    rest.get(..len).map(|message| (message, 2 + len))
}

/// Reads what `stream` has into `buf`. A short read means the socket is empty: its readiness
/// is then cleared at once, instead of being learnt from one more read that would return
/// WouldBlock (a system call per wake-up saved). The read runs inside `try_io`, so readiness
/// set by an event newer than the read is kept (no lost wake-up).
fn read_draining(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    let r = stream.try_io(Interest::READABLE, || {
        let n = (&*SockRef::from(stream)).read(buf)?;
        got = n;
        if n > 0 && n < buf.len() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}

/// Appends `message` to `out` with its 2-byte length prefix.
fn push_frame(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(
        &u16::try_from(message.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
}

/// What a connection needs from its listener.
pub(crate) struct Context<'a> {
    pub handler: &'a Handler,
    pub limits: &'a TcpLimits,
    pub registry: &'a Registry,
    pub shared: &'a ConnShared,
    /// The client (canonical).
    pub source: IpAddr,
}

/// What one [`Session::pass`] did.
struct Pass {
    /// Messages answered.
    answered: usize,
    /// The read filled the buffer: more is probably waiting.
    full: bool,
}

/// One connection's state between batches.
#[derive(Default)]
struct Session {
    /// Received bytes not answered yet: the start of a message, or whole messages held back
    /// while answers were waiting.
    carry: Vec<u8>,
    /// Answers the socket has not taken yet, from `sent` on.
    unsent: Vec<u8>,
    sent: usize,
    /// Queries answered so far (for the per-connection cap).
    answered: usize,
    /// The client has closed its side.
    eof: bool,
    /// The query cap is reached: write what is waiting, then close.
    capped: bool,
}

impl Session {
    fn has_unsent(&self) -> bool {
        self.sent < self.unsent.len()
    }

    /// True when `carry` holds a whole message (held back while answers were waiting).
    fn has_message(&self) -> bool {
        next_frame(&self.carry).is_some()
    }

    /// Nothing more will be answered on this connection.
    fn finished(&self) -> bool {
        self.capped || (self.eof && !self.has_message())
    }

    /// One pass without waiting: reads what the socket has after what was carried over,
    /// answers every complete message into one buffer and writes it with one call.
    fn pass(&mut self, stream: &TcpStream, cx: &Context<'_>) -> io::Result<Pass> {
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch {
                input,
                answer,
                output,
            } = scratch;
            let carried = self.carry.len();
            if input.len() < carried + MAX_FRAME {
                input.resize(carried + MAX_FRAME, 0);
            }
            let mut filled = carried;
            if let Some(head) = input.get_mut(..carried) {
                head.copy_from_slice(&self.carry);
            }
            // No read while answers wait (the client is not reading) or after a close.
            let mut full = false;
            if !self.eof && !self.has_unsent() {
                let room = input.get_mut(filled..).unwrap_or_default();
                let len = room.len();
                match read_draining(stream, room) {
                    Ok(0) => self.eof = true,
                    Ok(n) => {
                        filled += n;
                        full = n == len;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let data = input.get(..filled).unwrap_or_default();
            let mut pos = 0;
            let mut count = 0;
            output.clear();
            while let Some((message, taken)) = data.get(pos..).and_then(next_frame) {
                if cx
                    .limits
                    .max_queries
                    .is_some_and(|cap| self.answered >= cap)
                {
                    self.capped = true;
                    break;
                }
                if count == 0 {
                    cx.shared.busy.store(true, Ordering::Relaxed);
                }
                pos += taken;
                count += 1;
                self.answered += 1;
                if let Some(messages) = cx.handler.transfer(message, cx.source) {
                    for m in &messages {
                        push_frame(output, m);
                    }
                } else if cx
                    .handler
                    .handle(message, cx.source, Transport::Tcp, answer)
                {
                    push_frame(output, answer);
                }
                if output.len() >= WRITE_BATCH {
                    self.write(stream, output)?;
                    output.clear();
                    if self.has_unsent() {
                        break; // the client is not keeping up: hold the rest back
                    }
                }
            }
            self.carry.clear();
            self.carry
                .extend_from_slice(data.get(pos..).unwrap_or_default());
            // Held-back messages grew it: an idle connection keeps no large buffer.
            if self.carry.is_empty() && self.carry.capacity() > 4096 {
                self.carry = Vec::new();
            }
            self.write(stream, output)?;
            // Let go of a large batch (a transfer); keep the usual size.
            if output.capacity() > 4 * WRITE_BATCH {
                *output = Vec::new();
            }
            Ok(Pass {
                answered: count,
                full,
            })
        })
    }

    /// Writes `out` after whatever is waiting; what the socket does not take waits.
    fn write(&mut self, stream: &TcpStream, out: &[u8]) -> io::Result<()> {
        if self.has_unsent() {
            self.unsent.extend_from_slice(out);
            return Ok(());
        }
        let mut done = 0;
        while let Some(rest) = out.get(done..).filter(|r| !r.is_empty()) {
            match stream.try_write(rest) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.unsent.clear();
        self.sent = 0;
        self.unsent
            .extend_from_slice(out.get(done..).unwrap_or_default());
        Ok(())
    }

    /// Writes what is waiting as far as the socket takes it.
    fn write_unsent(&mut self, stream: &TcpStream) -> io::Result<()> {
        while let Some(rest) = self.unsent.get(self.sent..).filter(|r| !r.is_empty()) {
            match stream.try_write(rest) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        // All written: let go of a large buffer (a transfer), keep a small one.
        self.unsent.clear();
        self.sent = 0;
        if self.unsent.capacity() > WRITE_BATCH {
            self.unsent = Vec::new();
        }
        Ok(())
    }
}

/// Serves one connection until it closes, times out, reaches its query cap, or a drain finds
/// it between queries.
pub(crate) async fn serve(
    stream: TcpStream,
    cx: Context<'_>,
    shutdown: &mut watch::Receiver<bool>,
) -> io::Result<()> {
    cx.handler.metrics().record_tcp_connection();
    let _ = stream.set_nodelay(true);
    let idle = cx.limits.idle_timeout;
    let mut session = Session::default();
    // A connection is closed when it has sent no complete query for the idle timeout:
    // dripping bytes of one message buys nothing.
    let mut deadline = Instant::now() + idle;
    loop {
        if !session.has_message() {
            // Idle, between queries: a drain closes the connection here at once; bytes
            // already waiting are read first (biased), so a query sent just before the
            // drain still counts as started. In the middle of a message, only the deadline.
            let ready = if session.carry.is_empty() {
                tokio::select! {
                    biased;
                    r = tokio::time::timeout_at(deadline, stream.readable()) => r,
                    () = drained(shutdown) => return Ok(()),
                }
            } else {
                tokio::time::timeout_at(deadline, stream.readable()).await
            };
            match ready {
                Err(_) => return Ok(()), // idle: close
                Ok(r) => r?,
            }
        }
        let pass = session.pass(&stream, &cx)?;
        // A client that does not read its answers is idle too.
        while session.has_unsent() {
            match tokio::time::timeout(idle, stream.writable()).await {
                Err(_) => return Ok(()),
                Ok(r) => r?,
            }
            session.write_unsent(&stream)?;
        }
        if pass.answered > 0 {
            deadline = Instant::now() + idle;
            cx.shared
                .last_active
                .store(cx.registry.now_ms(), Ordering::Relaxed);
            cx.shared.busy.store(false, Ordering::Relaxed);
        }
        if session.finished() {
            return Ok(());
        }
        // Draining: what was started is answered; close between queries.
        if *shutdown.borrow() && session.carry.is_empty() {
            return Ok(());
        }
        // A client streaming queries as fast as it can gets a full buffer per turn, then
        // the other connections on this thread get theirs (readiness alone would let it run
        // for Tokio's whole budget of 128 passes).
        if pass.full {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_frame_takes_whole_messages_only() {
        assert_eq!(next_frame(&[]), None);
        assert_eq!(next_frame(&[0]), None);
        assert_eq!(next_frame(&[0, 0]), Some((&[][..], 2)));
        assert_eq!(next_frame(&[0, 3, 1, 2]), None);
        assert_eq!(next_frame(&[0, 3, 1, 2, 3]), Some((&[1, 2, 3][..], 5)));
        // Only the first of two; the rest is left for the next call.
        assert_eq!(next_frame(&[0, 1, 9, 0, 1, 8]), Some((&[9][..], 3)));
        // The length is big-endian.
        let mut long = vec![1, 0];
        long.extend(std::iter::repeat_n(7u8, 256));
        assert_eq!(
            next_frame(&long).map(|(m, n)| (m.len(), n)),
            Some((256, 258))
        );
        assert_eq!(next_frame(&long[..257]), None);
    }

    #[test]
    fn push_frame_prefixes_the_length() {
        let mut out = vec![0xaa];
        push_frame(&mut out, &[1, 2, 3]);
        assert_eq!(out, [0xaa, 0, 3, 1, 2, 3]);
    }
}
