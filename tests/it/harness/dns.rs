//! DNS as a client sees it: queries built with hickory-proto, sent over UDP or TCP with a
//! deadline, replies decoded (and kept as bytes), raw wire helpers for malformed packets, and
//! the one way to read the A records of an answer.
//!
//! Owns: every DNS exchange of the tests. Must never: send anywhere but loopback, or wait
//! without a deadline.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::NET_TIMEOUT;

/// Sends `query` to the server at `dns` over `transport` and decodes the reply (panics on
/// timeout or a bad reply).
pub fn exchange_at(dns: SocketAddr, query: &Query, transport: Transport) -> Reply {
    try_exchange_at(dns, query, transport)
        .unwrap_or_else(|| panic!("no {transport:?} reply from {dns} to {query:?}"))
}

/// Like [`exchange_at`], `None` when no reply came within [`NET_TIMEOUT`].
pub fn try_exchange_at(dns: SocketAddr, query: &Query, transport: Transport) -> Option<Reply> {
    let raw = exchange_raw(dns, &query.to_bytes(), transport, NET_TIMEOUT)?;
    Some(Reply::decode(raw, query.id))
}

/// A UDP socket with source address `src` (any 127/8 address is local on Linux), connected
/// to `server`.
pub fn udp_from(src: impl Into<IpAddr>, server: SocketAddr) -> UdpSocket {
    let src = src.into();
    let s = UdpSocket::bind((src, 0)).unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect(server).unwrap();
    s
}

/// A TCP connection from source address `src` to `server`, with read/write timeouts set.
pub fn tcp_from(src: impl Into<IpAddr>, server: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let src = src.into();
    let s = Socket::new(Domain::for_address(server), Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((src, 0)).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    s.connect_timeout(&server.into(), NET_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect from {src} to {server}: {e}"));
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(NET_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
    s
}

/// One query (wire bytes) over an open TCP connection; `None` if the server closed it.
pub fn ask_tcp(s: &mut TcpStream, query: &[u8]) -> Option<Message> {
    s.write_all(&frame(query)).ok()?;
    read_frame(s).map(|raw| Message::from_vec(&raw).unwrap())
}

/// Raw bytes to `server` over `transport` (a new socket or connection); the reply's bytes,
/// or `None` if nothing came within `wait`.
pub fn exchange_raw(
    server: SocketAddr,
    bytes: &[u8],
    transport: Transport,
    wait: Duration,
) -> Option<Vec<u8>> {
    match transport {
        Transport::Udp => udp_exchange(server, bytes, wait),
        Transport::Tcp => tcp_exchange(server, bytes, wait),
    }
}

/// The A addresses in the answer section, sorted (other types are left out).
pub fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
    sorted_answers(msg, |d| match d {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

/// The AAAA addresses in the answer section, sorted.
pub fn aaaa_records(msg: &Message) -> Vec<Ipv6Addr> {
    sorted_answers(msg, |d| match d {
        RData::AAAA(a) => Some(a.0),
        _ => None,
    })
}

fn sorted_answers<T: Ord>(msg: &Message, pick: impl Fn(&RData) -> Option<T>) -> Vec<T> {
    let mut v: Vec<T> = msg.answers.iter().filter_map(|r| pick(&r.data)).collect();
    v.sort();
    v
}

/// The A and AAAA addresses in the answer section, sorted.
pub fn addresses(msg: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = a_records(msg).into_iter().map(IpAddr::V4).collect();
    v.extend(aaaa_records(msg).into_iter().map(IpAddr::V6));
    v.sort();
    v
}

/// DNS transports; one table of cases runs over [`Transport::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams (RFC 1035 §4.2.1).
    Udp,
    /// Two-byte length-framed stream (RFC 1035 §4.2.2, RFC 7766).
    Tcp,
}

impl Transport {
    /// Both transports.
    pub const ALL: [Transport; 2] = [Transport::Udp, Transport::Tcp];
}

/// A query to build: name, type, class, id, opcode, and optionally EDNS with options.
#[derive(Clone, Debug)]
pub struct Query {
    /// Query name, as given (case is kept).
    pub name: String,
    /// QTYPE.
    pub qtype: RecordType,
    /// QCLASS (IN unless set).
    pub class: DNSClass,
    /// Message id.
    pub id: u16,
    /// OPCODE.
    pub op_code: OpCode,
    /// The OPT record to send, if any.
    pub edns: Option<Edns>,
    /// The RD (recursion desired) bit.
    pub rd: bool,
}

impl Query {
    /// A QUERY for `name`/`qtype` in class IN, no EDNS, RD clear, random-ish id.
    pub fn new(name: &str, qtype: RecordType) -> Self {
        Query {
            name: name.to_string(),
            qtype,
            class: DNSClass::IN,
            id: next_id(),
            op_code: OpCode::Query,
            edns: None,
            rd: false,
        }
    }

    /// Sets QCLASS.
    pub fn class(mut self, class: DNSClass) -> Self {
        self.class = class;
        self
    }

    /// Sets the message id.
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// Sets the RD bit.
    pub fn rd(mut self, rd: bool) -> Self {
        self.rd = rd;
        self
    }

    /// Sets OPCODE.
    pub fn op_code(mut self, op_code: OpCode) -> Self {
        self.op_code = op_code;
        self
    }

    /// Adds EDNS version 0 with this UDP payload size (keeps options already added).
    pub fn edns(mut self, payload: u16) -> Self {
        self.edns_mut().set_max_payload(payload);
        self
    }

    /// Sets the DO bit (RFC 3225; adds EDNS with payload 1232 if absent).
    pub fn dnssec_ok(mut self) -> Self {
        self.edns_mut().set_dnssec_ok(true);
        self
    }

    /// Sets the EDNS version (adds EDNS with payload 1232 if absent).
    pub fn edns_version(mut self, version: u8) -> Self {
        self.edns_mut().set_version(version);
        self
    }

    /// Adds an EDNS option (adds EDNS with payload 1232 if absent).
    pub fn edns_option(mut self, option: EdnsOption) -> Self {
        self.edns_mut().options_mut().insert(option);
        self
    }

    /// Adds an EDNS Client Subnet option (RFC 7871) for `addr/source_prefix`.
    pub fn ecs(self, addr: IpAddr, source_prefix: u8) -> Self {
        self.edns_option(EdnsOption::Subnet(ClientSubnet::new(
            addr,
            source_prefix,
            0,
        )))
    }

    fn edns_mut(&mut self) -> &mut Edns {
        self.edns.get_or_insert_with(|| {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e
        })
    }

    /// The hickory message for this query.
    pub fn to_message(&self) -> Message {
        let mut m = Message::new(self.id, MessageType::Query, self.op_code);
        m.metadata.recursion_desired = self.rd;
        let mut q = hickory_proto::op::Query::query(name(&self.name), self.qtype);
        q.set_query_class(self.class);
        m.add_query(q);
        if let Some(e) = &self.edns {
            m.set_edns(e.clone());
        }
        m
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_message().to_vec().unwrap()
    }
}

fn next_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x2a00);
    NEXT.fetch_add(7919, Ordering::Relaxed)
}

/// A name in presentation form, case kept (panics if invalid: test input).
pub fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|e| panic!("bad name {s:?}: {e}"))
}

/// A decoded reply plus its bytes (for checks hickory's decoder would normalise away).
#[derive(Clone, Debug)]
pub struct Reply {
    /// The decoded message.
    pub msg: Message,
    /// The bytes as received (without the TCP length prefix).
    pub raw: Vec<u8>,
}

impl Reply {
    /// Decodes `raw`, checking that it is a response to message `id`.
    pub fn decode(raw: Vec<u8>, id: u16) -> Self {
        let msg = Message::from_vec(&raw)
            .unwrap_or_else(|e| panic!("undecodable reply ({e}): {raw:02x?}"));
        assert_eq!(msg.metadata.id, id, "reply id");
        assert_eq!(msg.metadata.message_type, MessageType::Response, "QR bit");
        Reply { msg, raw }
    }

    /// The full (extended) RCODE as a number: header bits plus the OPT's upper 8 bits.
    pub fn rcode(&self) -> u16 {
        let low = u16::from(self.raw[3] & 0x0f);
        let high = self
            .msg
            .edns
            .as_ref()
            .map_or(0, |e| u16::from(e.rcode_high()));
        (high << 4) | low
    }

    /// Answer records of `rtype`.
    pub fn answers_of(&self, rtype: RecordType) -> Vec<&Record> {
        self.msg
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .collect()
    }
}

impl std::ops::Deref for Reply {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.msg
    }
}

/// The RDATA of `data` in uncompressed wire form (RFC 4034 §6.2 canonical form, which for
/// the types tested here is the plain RFC 1035 encoding with lower-case names).
pub fn rdata_wire(data: &RData) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_form(true);
    data.emit(&mut enc).unwrap();
    buf
}

/// A domain name in uncompressed wire form.
pub fn wire_name(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in s.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A header (RFC 1035 §4.1.1) with the given id, flag word and counts.
pub fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

pub(super) fn udp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server).unwrap();
    sock.send(bytes).unwrap();
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65535];
    match sock.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            None
        }
        Err(e) => panic!("udp recv: {e}"),
    }
}

pub(super) fn tcp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, NET_TIMEOUT).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.set_write_timeout(Some(NET_TIMEOUT)).unwrap();
    s.write_all(&frame(bytes)).ok()?;
    read_frame(&mut s)
}

/// `bytes` with the two-byte length prefix of DNS over TCP.
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Reads one length-framed message; `None` on EOF, reset or timeout.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}
