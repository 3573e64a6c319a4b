//! The UDP fast path: one blocking thread per socket, batched receive and send.
//!
//! Each worker owns one socket (`server::spawn_udp` binds one each with `SO_REUSEPORT`, so the
//! kernel spreads clients over them without a shared queue) and loops: `recvmmsg` takes every
//! datagram waiting (at least one, at most [`BATCH`]), the handler answers each into a buffer
//! the worker reuses, and `sendmmsg` sends the answers in one system call. Under load that is
//! two system calls per batch instead of two per query, which is most of a query's cost on
//! loopback. No allocation per query, no lock, no async machinery: the thread sleeps in the
//! kernel when there is nothing to do. `nix` wraps both calls safely, so this module has no
//! `unsafe`.
//!
//! Must never: answer a datagram it did not receive whole (truncated reads are dropped), or
//! stop serving because of one bad send (it is logged at debug level and skipped).

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

use super::handler::Handler;
use super::metrics::Transport;
use super::rrl::Rrl;

/// Datagrams taken per system call.
pub const BATCH: usize = 32;

/// Largest query read. Queries are small (a name, an OPT with ECS, perhaps a cookie); one that
/// does not fit arrives truncated and is dropped, as a mangled datagram would be.
pub const MAX_QUERY: usize = 4096;

/// Serves `socket` on the calling thread until the socket fails for good; responses pass
/// through `rrl` when given.
pub fn serve(socket: &UdpSocket, handler: &Handler, rrl: Option<&Rrl>) {
    let fd = socket.as_raw_fd();
    let mut packets: Box<[[u8; MAX_QUERY]; BATCH]> = Box::new([[0; MAX_QUERY]; BATCH]);
    let mut answers: [Vec<u8>; BATCH] = std::array::from_fn(|_| Vec::with_capacity(1232));
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut received: [(usize, Option<SocketAddr>); BATCH] = [(0, None); BATCH];
    let mut peers: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let no_cmsgs: [ControlMessage<'_>; 0] = [];

    loop {
        let count = {
            let mut slices = packets.each_mut().map(|p| [IoSliceMut::new(p)]);
            match nix::sys::socket::recvmmsg(
                fd,
                &mut recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    let mut n = 0;
                    for (slot, msg) in received.iter_mut().zip(results) {
                        let whole = !msg.flags.contains(MsgFlags::MSG_TRUNC);
                        *slot = (
                            if whole { msg.bytes } else { 0 },
                            msg.address.and_then(to_socket_addr),
                        );
                        n += 1;
                    }
                    n
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    // ICMP errors and the like surface here on some systems; keep serving,
                    // but do not spin if the socket itself is gone.
                    tracing::debug!(error = %e, "udp receive failed");
                    if e == nix::errno::Errno::EBADF || e == nix::errno::Errno::ENOTSOCK {
                        return;
                    }
                    continue;
                }
            }
        };

        // Answer into the first `ready` answer buffers, in order.
        let mut ready = 0;
        for (packet, &(len, peer)) in packets.iter().zip(&received).take(count) {
            let (Some(query), Some(peer)) = (packet.get(..len), peer) else {
                continue;
            };
            if len == 0 {
                handler.metrics().record_drop();
                continue;
            }
            let (Some(out), Some(addr)) = (answers.get_mut(ready), peers.get_mut(ready)) else {
                break;
            };
            // Canonical once, here: on a v4-mapped socket an IPv4 client arrives as
            // ::ffff:a.b.c.d, and RRL, GeoIP and subnet overrides must see a.b.c.d. The answer
            // still goes to `peer` as received.
            let source = peer.ip().to_canonical();
            let Some(responded) = handler.respond(query, source, Transport::Udp, out) else {
                continue;
            };
            if rrl
                .as_ref()
                .is_none_or(|r| r.apply(source, out, responded.wildcard_zone, handler.metrics()))
            {
                *addr = Some(SockaddrStorage::from(peer));
                ready += 1;
            }
        }
        send_all(fd, &mut send_headers, &answers, &peers, ready, &no_cmsgs);
    }
}

/// Sends `answers[..ready]` to `peers[..ready]`, in as few `sendmmsg` calls as the kernel
/// allows; a datagram the kernel refuses is skipped.
fn send_all(
    fd: std::os::fd::RawFd,
    headers: &mut MultiHeaders<SockaddrStorage>,
    answers: &[Vec<u8>; BATCH],
    peers: &[Option<SockaddrStorage>; BATCH],
    ready: usize,
    no_cmsgs: &[ControlMessage<'_>; 0],
) {
    let mut start = 0;
    while start < ready {
        let (Some(bufs), Some(addrs)) = (answers.get(start..ready), peers.get(start..ready)) else {
            return;
        };
        let slices: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|i| [IoSlice::new(bufs.get(i).map_or(&[][..], |b| &b[..]))]);
        let sent = match nix::sys::socket::sendmmsg(
            fd,
            headers,
            slices.iter().take(bufs.len()),
            addrs,
            no_cmsgs,
            MsgFlags::empty(),
        ) {
            Ok(results) => results.count().max(1),
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => {
                // The first unsent datagram failed (e.g. no route to its peer): skip it.
                tracing::debug!(error = %e, "udp send failed");
                1
            }
        };
        start += sent;
    }
}

fn to_socket_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Starts a named thread serving `socket` (see [`serve`]).
pub fn spawn(
    socket: UdpSocket,
    handler: Arc<Handler>,
    rrl: Option<Arc<Rrl>>,
    index: usize,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("meridian-udp-{index}"))
        .spawn(move || serve(&socket, &handler, rrl.as_deref()))
        .map(drop)
}
