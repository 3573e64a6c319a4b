//! Who may hold an API connection, and what each connection is doing: the slot table behind
//! `api::tls`.
//!
//! Two pools, so that probers and `/health` get in while others hold every ordinary slot:
//! - The general pool ([`MAX_API_CONNECTIONS`]) serves every route, at most
//!   [`MAX_API_CONNECTIONS_PER_CLIENT`] connections per client (an IPv4 address or an IPv6
//!   /64). When it is full, the connection idle for longest (no request in flight, idle at
//!   least [`API_MIN_IDLE_TO_EVICT`]) is closed for the newcomer; a client at its cap can only
//!   displace its own idle connections.
//! - When nothing can be displaced, a client that holds no general slot may take a reserved
//!   one ([`API_RESERVED_CONNECTIONS`], at most [`API_RESERVED_PER_CLIENT`] per client). A
//!   reserved connection serves one request, only `POST /v1/reports` or `GET /health`, and
//!   must deliver it within `API_RESERVED_TIMEOUT` (enforced by `api::tls`). Probers send
//!   one small signed report at once, so a client that cannot do that gains nothing there.
//!
//! Owns: admission, eviction and each connection's [`Phase`]. Must never: do I/O, or be
//! locked while a connection reads or writes (the table is locked at accept and close only;
//! phases are atomics).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::tls::{
    API_MIN_IDLE_TO_EVICT, API_RESERVED_CONNECTIONS, API_RESERVED_PER_CLIENT, MAX_API_CONNECTIONS,
    MAX_API_CONNECTIONS_PER_CLIENT,
};

/// The unit of per-client accounting: an IPv4 address (IPv4-mapped IPv6 included), or the /64
/// of an IPv6 address (one subscriber's or host's usual allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientKey {
    /// The key of a peer address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => ClientKey::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4),
                None => ClientKey::V6((a.to_bits() >> 64) as u64),
            },
        }
    }
}

/// Which share of the capacity a connection holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// Any route, keep-alive, the ordinary deadlines.
    General,
    /// One request to report ingest or `/health`, the short reserved deadline.
    Reserved,
}

/// Why a connection was closed at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client holds its share and none of its connections is idle.
    PerClient,
    /// Every slot is busy and the reserve is taken or not open to this client.
    Full,
}

impl Refusal {
    /// A label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerClient => "per_client",
            Refusal::Full => "full",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// What admission did to API connections, for `/metrics`: refusals by reason and evictions.
/// One set per process (every API listener counts into it), like the prober's.
#[derive(Debug)]
pub struct ApiConnectionMetrics {
    refused_family: prometheus_client::metrics::family::Family<
        ReasonLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    evicted: prometheus_client::metrics::counter::Counter,
}

impl Default for ApiConnectionMetrics {
    fn default() -> Self {
        let refused_family = prometheus_client::metrics::family::Family::default();
        // Both reasons from the start, so an alert on a rate sees zero, not nothing.
        for r in [Refusal::PerClient, Refusal::Full] {
            drop(refused_family.get_or_create(&ReasonLabels { reason: r.as_str() }));
        }
        Self {
            refused_family,
            evicted: prometheus_client::metrics::counter::Counter::default(),
        }
    }
}

impl ApiConnectionMetrics {
    /// Registers both series.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "meridian_api_connections_refused",
            "API connections closed at accept because a limit was reached: per_client (the \
             client's share, none of it idle) or full (every slot busy, the reserve not open)",
            self.refused_family.clone(),
        );
        registry.register(
            "meridian_api_connections_evicted",
            "Idle API connections closed to make room for a new one",
            self.evicted.clone(),
        );
    }

    /// Counts a refused connection.
    pub fn record_refused(&self, reason: Refusal) {
        self.refused_family
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts an eviction.
    pub fn record_evicted(&self) {
        self.evicted.inc();
    }
}

static API_CONNECTIONS: std::sync::LazyLock<ApiConnectionMetrics> =
    std::sync::LazyLock::new(ApiConnectionMetrics::default);

/// The instance every API listener of this process counts into.
pub fn connection_metrics() -> &'static ApiConnectionMetrics {
    &API_CONNECTIONS
}

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No request in flight (just accepted, or its last response was sent): may be evicted.
    Idle,
    /// A request's first byte arrived; its headers and body are not complete yet.
    Reading,
    /// The request is read; its handler runs.
    Handling,
    /// The response is ready and being sent.
    Writing,
    /// Closed by the table for a newcomer: the connection must close now.
    Evicted,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Idle,
        Phase::Reading,
        Phase::Handling,
        Phase::Writing,
        Phase::Evicted,
    ];

    fn bits(self) -> u64 {
        match self {
            Phase::Idle => 0,
            Phase::Reading => 1,
            Phase::Handling => 2,
            Phase::Writing => 3,
            Phase::Evicted => 4,
        }
    }
}

/// One connection's phase and when it began, shared by the connection's I/O, its service, its
/// watchdog and the table. Lock-free: one atomic word, `(since_ms << 3) | phase`, so a phase
/// and its start are always read together and transitions are compare-and-swap.
pub struct Activity {
    word: AtomicU64,
    epoch: Instant,
    /// Signalled on every phase change (a stored permit if nobody waits yet).
    changed: Notify,
}

impl Activity {
    fn new(epoch: Instant, now_ms: u64) -> Self {
        Self {
            word: AtomicU64::new(pack(Phase::Idle, now_ms)),
            epoch,
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX >> PHASE_BITS)
    }

    /// The current phase and when it began.
    pub fn phase(&self) -> (Phase, Instant) {
        let (phase, ms) = unpack(self.word.load(Ordering::Acquire));
        (phase, self.epoch + Duration::from_millis(ms))
    }

    /// Moves `from` -> `to` (stamped now); false when the phase was not `from`.
    fn transition(&self, from: &[Phase], to: Phase) -> bool {
        let now = pack(to, self.now_ms());
        let moved = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                from.contains(&unpack(w).0).then_some(now)
            })
            .is_ok();
        if moved {
            self.changed.notify_one();
        }
        moved
    }

    /// A byte arrived or a request began: an idle connection starts reading a request, and
    /// the request deadline counts from now. Cheap when not idle (one atomic load).
    pub fn begin_request(&self) {
        if unpack(self.word.load(Ordering::Relaxed)).0 == Phase::Idle {
            self.transition(&[Phase::Idle], Phase::Reading);
        }
    }

    /// The request's headers and body are complete.
    pub fn request_read(&self) {
        self.transition(&[Phase::Reading], Phase::Handling);
    }

    /// The handler answered: the response is being sent from now.
    pub fn response_ready(&self) {
        self.transition(&[Phase::Reading, Phase::Handling], Phase::Writing);
    }

    /// The response is sent (or the TLS handshake done): idle from now.
    pub fn finish_request(&self) {
        self.transition(
            &[Phase::Reading, Phase::Handling, Phase::Writing],
            Phase::Idle,
        );
    }

    /// Resolves on the next phase change after (or a stored one before) the call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Low bits of an [`Activity`] word that hold the phase.
const PHASE_BITS: u32 = 3;

fn pack(phase: Phase, ms: u64) -> u64 {
    (ms << PHASE_BITS) | phase.bits()
}

fn unpack(word: u64) -> (Phase, u64) {
    let phase = Phase::ALL
        .into_iter()
        .find(|p| p.bits() == word & ((1 << PHASE_BITS) - 1))
        .unwrap_or(Phase::Evicted);
    (phase, word >> PHASE_BITS)
}

/// A connection the table let in. Hand `id` back with [`SlotTable::release`] when it closes.
pub struct Admitted {
    /// The slot's id.
    pub id: u64,
    /// Which share it holds.
    pub pool: Pool,
    /// Its phase, shared with the table.
    pub activity: Arc<Activity>,
    /// True when an idle connection was evicted to make room.
    pub evicted: bool,
}

struct Conn {
    client: ClientKey,
    pool: Pool,
    activity: Arc<Activity>,
}

#[derive(Clone, Copy, Default)]
struct Held {
    general: usize,
    reserved: usize,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    clients: HashMap<ClientKey, Held>,
    general: usize,
    reserved: usize,
}

impl Table {
    fn held(&mut self, client: ClientKey) -> &mut Held {
        self.clients.entry(client).or_default()
    }

    fn insert(&mut self, client: ClientKey, pool: Pool, activity: Arc<Activity>) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let held = self.held(client);
        match pool {
            Pool::General => held.general += 1,
            Pool::Reserved => held.reserved += 1,
        }
        match pool {
            Pool::General => self.general += 1,
            Pool::Reserved => self.reserved += 1,
        }
        self.conns.insert(
            id,
            Conn {
                client,
                pool,
                activity,
            },
        );
        id
    }

    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        let held = self.held(conn.client);
        match conn.pool {
            Pool::General => held.general = held.general.saturating_sub(1),
            Pool::Reserved => held.reserved = held.reserved.saturating_sub(1),
        }
        if held.general == 0 && held.reserved == 0 {
            self.clients.remove(&conn.client);
        }
        match conn.pool {
            Pool::General => self.general = self.general.saturating_sub(1),
            Pool::Reserved => self.reserved = self.reserved.saturating_sub(1),
        }
        Some(conn)
    }

    /// Evicts the general connection (of `only`, when given) idle for longest, at least
    /// [`API_MIN_IDLE_TO_EVICT`] before `now`; true when one was.
    fn evict_idle(&mut self, only: Option<ClientKey>, now: Instant) -> bool {
        // O(connections) under the lock, only when a pool or a client is full: a scan of at
        // most a few hundred entries, cheaper than the accept itself.
        let mut candidates: Vec<(Instant, u64)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pool == Pool::General && only.is_none_or(|k| k == c.client))
            .filter_map(|(id, c)| match c.activity.phase() {
                (Phase::Idle, since)
                    if now.saturating_duration_since(since) >= API_MIN_IDLE_TO_EVICT =>
                {
                    Some((since, *id))
                }
                _ => None,
            })
            .collect();
        candidates.sort_unstable();
        // A candidate may have started a request since the scan: the compare-and-swap
        // refuses it, and the next one is tried.
        for (_, id) in candidates {
            let evicted = self
                .conns
                .get(&id)
                .is_some_and(|c| c.activity.transition(&[Phase::Idle], Phase::Evicted));
            if evicted {
                self.remove(id);
                return true;
            }
        }
        false
    }
}

/// Open API connections by id and client, with the caps and eviction of the module header.
pub struct SlotTable {
    table: Mutex<Table>,
    epoch: Instant,
}

impl Default for SlotTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotTable {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            table: Mutex::new(Table::default()),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a connection from `peer`, evicting an idle connection when needed.
    pub fn admit(&self, peer: IpAddr) -> Result<Admitted, Refusal> {
        self.admit_at(peer, Instant::now())
    }

    /// [`SlotTable::admit`] at `now`.
    fn admit_at(&self, peer: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        let client = ClientKey::of(peer);
        let mut table = self.lock();
        let held = table.clients.get(&client).copied().unwrap_or_default();
        let mut evicted = false;
        let mut pool = Pool::General;
        if held.general >= MAX_API_CONNECTIONS_PER_CLIENT {
            if !table.evict_idle(Some(client), now) {
                return Err(Refusal::PerClient);
            }
            evicted = true;
        } else if table.general >= MAX_API_CONNECTIONS {
            if table.evict_idle(None, now) {
                evicted = true;
            } else if held.general == 0
                && held.reserved < API_RESERVED_PER_CLIENT
                && table.reserved < API_RESERVED_CONNECTIONS
            {
                pool = Pool::Reserved;
            } else {
                return Err(Refusal::Full);
            }
        }
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX >> 2);
        let activity = Arc::new(Activity::new(self.epoch, now_ms));
        let id = table.insert(client, pool, Arc::clone(&activity));
        Ok(Admitted {
            id,
            pool,
            activity,
            evicted,
        })
    }

    /// Frees the slot of connection `id` (a no-op if it was evicted already).
    pub fn release(&self, id: u64) {
        self.lock().remove(id);
    }

    /// (general, reserved, clients) open now.
    #[cfg(test)]
    fn open(&self) -> (usize, usize, usize) {
        let t = self.lock();
        (t.general, t.reserved, t.clients.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A distinct IPv4 client per index, in 10.0.0.0/8 (the named test clients are not).
    fn client(i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000_u32 + i as u32))
    }

    /// Makes every connection look idle since long before `now`.
    fn later() -> Instant {
        Instant::now() + API_MIN_IDLE_TO_EVICT + Duration::from_millis(10)
    }

    #[test]
    fn client_keys_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ClientKey::of(ip("2001:db8:1:2::1")),
            ClientKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
        assert_ne!(
            ClientKey::of(ip("192.0.2.1")),
            ClientKey::of(ip("192.0.2.2"))
        );
    }

    #[test]
    fn a_client_at_its_cap_only_displaces_its_own_idle_connections() {
        let t = SlotTable::new();
        let a = ip("192.0.2.1");
        let conns: Vec<Admitted> = (0..MAX_API_CONNECTIONS_PER_CLIENT)
            .map(|_| t.admit(a).unwrap())
            .collect();
        // All just connected: none idle long enough to go.
        assert_eq!(t.admit(a).err(), Some(Refusal::PerClient));
        // All busy: still refused, later too.
        for c in &conns {
            c.activity.begin_request();
        }
        assert_eq!(t.admit_at(a, later()).err(), Some(Refusal::PerClient));
        // Another client is not affected.
        assert!(t.admit(ip("192.0.2.2")).is_ok());
        // One of a's finishes its request: it is idle, and goes for a's newcomer.
        conns[3].activity.finish_request();
        let newcomer = t.admit_at(a, later()).unwrap();
        assert!(newcomer.evicted);
        assert_eq!(newcomer.pool, Pool::General);
        assert_eq!(conns[3].activity.phase().0, Phase::Evicted);
        assert_eq!(t.open(), (MAX_API_CONNECTIONS_PER_CLIENT + 1, 0, 2));
        // Releasing the evicted one later changes nothing.
        t.release(conns[3].id);
        assert_eq!(t.open(), (MAX_API_CONNECTIONS_PER_CLIENT + 1, 0, 2));
    }

    #[test]
    fn a_full_pool_evicts_the_longest_idle_connection() {
        let t = SlotTable::new();
        let conns: Vec<Admitted> = (0..MAX_API_CONNECTIONS)
            .map(|i| t.admit(client(i)).unwrap())
            .collect();
        for c in &conns {
            c.activity.begin_request();
        }
        // Two become idle, 7 first, then 9: 7 has been idle longest and goes first.
        conns[7].activity.finish_request();
        std::thread::sleep(Duration::from_millis(5));
        conns[9].activity.finish_request();
        let newcomer = t.admit_at(ip("198.51.100.1"), later()).unwrap();
        assert!(newcomer.evicted);
        assert_eq!(conns[7].activity.phase().0, Phase::Evicted);
        assert_eq!(conns[9].activity.phase().0, Phase::Idle);
        assert_eq!(t.open().0, MAX_API_CONNECTIONS);
        // A connection that just went idle is not evicted: the newcomer gets a reserved slot.
        let fresh = t.admit(ip("198.51.100.2")).unwrap();
        assert!(!fresh.evicted);
        assert_eq!(fresh.pool, Pool::Reserved);
        assert_eq!(conns[9].activity.phase().0, Phase::Idle);
    }

    #[test]
    fn the_reserve_is_for_clients_without_a_general_slot() {
        let t = SlotTable::new();
        let conns: Vec<Admitted> = (0..MAX_API_CONNECTIONS)
            .map(|i| t.admit(client(i % 10)).unwrap())
            .collect();
        for c in &conns {
            c.activity.begin_request();
        }
        // A client that holds general slots cannot spill into the reserve.
        assert_eq!(t.admit(client(0)).err(), Some(Refusal::Full));
        // A newcomer gets its reserved share, then no more.
        let prober = ip("203.0.113.5");
        let reserved: Vec<Admitted> = (0..API_RESERVED_PER_CLIENT)
            .map(|_| t.admit(prober).unwrap())
            .collect();
        assert!(reserved.iter().all(|r| r.pool == Pool::Reserved));
        assert_eq!(t.admit(prober).err(), Some(Refusal::Full));
        // The reserve as a whole is bounded.
        let mut n = API_RESERVED_PER_CLIENT;
        let mut i = 0;
        while n < API_RESERVED_CONNECTIONS {
            t.admit(client(1000 + i)).unwrap();
            n += 1;
            i += 1;
        }
        assert_eq!(t.admit(client(5000)).err(), Some(Refusal::Full));
        assert_eq!(t.open().1, API_RESERVED_CONNECTIONS);
        // Reserved slots come back when released.
        t.release(reserved[0].id);
        assert_eq!(t.admit(prober).unwrap().pool, Pool::Reserved);
    }

    #[test]
    fn phases_move_only_along_a_request() {
        let t = SlotTable::new();
        let a = t.admit(ip("192.0.2.1")).unwrap().activity;
        assert_eq!(a.phase().0, Phase::Idle);
        a.request_read();
        assert_eq!(a.phase().0, Phase::Idle, "nothing to finish reading");
        a.begin_request();
        let (p, since) = a.phase();
        assert_eq!(p, Phase::Reading);
        // More bytes of the same request do not move the deadline.
        std::thread::sleep(Duration::from_millis(5));
        a.begin_request();
        assert_eq!(a.phase(), (Phase::Reading, since));
        a.request_read();
        assert_eq!(a.phase().0, Phase::Handling);
        a.begin_request();
        assert_eq!(a.phase().0, Phase::Handling);
        a.response_ready();
        assert_eq!(a.phase().0, Phase::Writing);
        a.begin_request();
        assert_eq!(a.phase().0, Phase::Writing);
        a.finish_request();
        assert_eq!(a.phase().0, Phase::Idle);
        assert!(a.transition(&[Phase::Idle], Phase::Evicted));
        a.begin_request();
        a.finish_request();
        assert_eq!(
            a.phase().0,
            Phase::Evicted,
            "an evicted connection stays evicted"
        );
    }
}
