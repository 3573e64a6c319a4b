//! Connection slots of one encrypted listener: a cap in total and per client host.
//!
//! A client host is its IPv4 address or its IPv6 /64 (as for TCP, so one host cannot take
//! every slot by cycling its addresses). A slot is taken at accept, before the TLS handshake
//! (a handshake is the expensive part), and given back when its [`Slot`] drops. Unlike TCP,
//! nothing is evicted: an encrypted connection that is idle is closed by its idle timeout
//! anyway, and the handshake a newcomer would need costs more than waiting for that.
//!
//! Owns: the counts. Must never: be locked across an await (only at accept and close).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use crate::dns::metrics::EncryptedRefusal;
use crate::dns::server::CLIENT_V6_PREFIX_LEN;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// The slots of one listener.
#[derive(Debug)]
pub struct Slots {
    counts: Mutex<Counts>,
    max: usize,
    max_per_client: usize,
}

/// One taken slot; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

impl Slots {
    /// Slots for at most `max` connections, `max_per_client` from one client host (each at
    /// least 1).
    pub fn new(max: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(Counts::default()),
            max: max.max(1),
            max_per_client: max_per_client.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `source`, or says which cap refused it.
    pub fn take(self: &Arc<Self>, source: IpAddr) -> Result<Slot, EncryptedRefusal> {
        let client = client_key(source);
        let mut counts = self.lock();
        if counts.per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client {
            return Err(EncryptedRefusal::PerClient);
        }
        if counts.total >= self.max {
            return Err(EncryptedRefusal::Full);
        }
        counts.total += 1;
        *counts.per_client.entry(client).or_insert(0) += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            client,
        })
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_client.remove(&self.client);
            }
        }
    }
}

/// The IPv4 address, or the IPv6 /64; v4-mapped addresses count as IPv4.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
            u128::from(a) & (u128::MAX << (128 - CLIENT_V6_PREFIX_LEN)),
        )),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_client_and_in_total_and_frees_on_drop() {
        let slots = Slots::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let c: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        // The v4-mapped form is the same client.
        assert_eq!(slots.take(c).unwrap_err(), EncryptedRefusal::PerClient);
        let _b1 = slots.take(b).unwrap();
        assert_eq!(slots.take(b_same_64).unwrap_err(), EncryptedRefusal::Full);
        assert_eq!(slots.open(), 3);
        drop(a1);
        assert_eq!(slots.open(), 2);
        let _b2 = slots.take(b_same_64).unwrap();
        assert_eq!(slots.take(b).unwrap_err(), EncryptedRefusal::PerClient);
    }
}
