//! Writing a response into a reused buffer: header, echoed question, RRsets, OPT.
//!
//! Owners are written as compression pointers into the question where they can be (the
//! query's own letter case is then echoed in every owner, as Knot does), everything else
//! uncompressed; RDATA comes pre-encoded from the routing table. The writer knows the
//! size limit from the start, so optional additional data that does not fit is left out and
//! a required section that does not fit turns the whole response into TC=1 (RFC 2181 §9).

use std::net::IpAddr;

use super::wire::{ClientSubnet, HEADER_LEN, Header, OPTION_ECS, Query, TYPE_OPT};
pub use crate::proto::{Owner, Rcode, Section};
use crate::routing::AnswerSink;

/// Room the OPT record takes: root name, type, class, TTL, RDLENGTH.
const OPT_FIXED_LEN: usize = 11;

/// Builds one response. Created per query over a buffer the worker reuses.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    counts: [u16; 3],
    /// Largest message allowed, OPT included.
    limit: usize,
    /// Bytes the OPT record will need at the end.
    opt_len: usize,
    question_end: usize,
    /// Set when something required did not fit.
    overflow: bool,
    /// Set once optional additional data was dropped; nothing after it is written.
    additional_closed: bool,
    aa: bool,
    rcode: Rcode,
    edns: Option<ResponseEdns>,
    /// CLASS of every record written: the question's.
    class: u16,
    /// The zone (a fixed hash of its apex) whose wildcard answered the QNAME, for RRL.
    wildcard_zone: Option<u64>,
}

/// What the response's OPT record carries.
#[derive(Clone, Copy, Debug)]
pub struct ResponseEdns {
    /// Our UDP payload size.
    pub udp_size: u16,
    /// Echo of the DO bit.
    pub dnssec_ok: bool,
    /// ECS to echo, with the scope we decided.
    pub client_subnet: Option<(ClientSubnet, u8)>,
}

impl<'b> Writer<'b> {
    /// Starts a response to `q`: header and the question copied from `packet`, so its letter
    /// case is echoed. `limit` is the largest message the transport allows.
    pub fn new(buf: &'b mut Vec<u8>, packet: &[u8], q: &Query, limit: usize) -> Self {
        buf.clear();
        buf.extend_from_slice(&q.id.to_be_bytes());
        // QR=1, opcode, RD echoed; CD echoed; counts patched in finish().
        buf.push(0x80 | (q.opcode << 3) | u8::from(q.rd));
        buf.push(if q.cd { 0x10 } else { 0 });
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(packet.get(HEADER_LEN..q.question_end).unwrap_or(&[]));
        let question_end = buf.len();
        Writer {
            buf,
            counts: [0; 3],
            limit,
            opt_len: 0,
            question_end,
            overflow: false,
            additional_closed: false,
            aa: false,
            rcode: Rcode::NoError,
            edns: None,
            class: q.qclass,
            wildcard_zone: None,
        }
    }

    /// An error response (FORMERR/NOTIMP) to a packet [`super::wire::parse`] rejected: the
    /// header, the question when it parsed (`question_end`), and an OPT when the query had
    /// one (RFC 6891 §6.1.1), as Knot and BIND answer. Call [`Writer::finish`] to complete it.
    pub fn rejection(
        buf: &'b mut Vec<u8>,
        packet: &[u8],
        h: Header,
        question_end: Option<usize>,
        rcode: Rcode,
    ) -> Self {
        buf.clear();
        buf.extend_from_slice(&h.id.to_be_bytes());
        buf.push(0x80 | ((h.opcode & 0x0F) << 3) | u8::from(h.rd));
        buf.push(if h.cd { 0x10 } else { 0 });
        let question = question_end.and_then(|end| packet.get(HEADER_LEN..end));
        buf.extend_from_slice(&[0, u8::from(question.is_some()), 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(question.unwrap_or(&[]));
        let question_end = buf.len();
        Writer {
            buf,
            counts: [0; 3],
            // Header, question and a bare OPT always fit the smallest UDP limit.
            limit: usize::from(u16::MAX),
            opt_len: 0,
            question_end,
            overflow: false,
            additional_closed: false,
            aa: false,
            rcode,
            edns: None,
            class: 0,
            wildcard_zone: None,
        }
    }

    /// Sets the OPT record the response will end with.
    pub fn set_edns(&mut self, edns: ResponseEdns) {
        self.opt_len = OPT_FIXED_LEN
            + edns
                .client_subnet
                .map_or(0, |(ecs, _)| 8 + usize::from(ecs.source_prefix).div_ceil(8));
        self.edns = Some(edns);
    }

    /// Updates the scope of the echoed ECS option (decided after the answer is known).
    pub fn set_ecs_scope(&mut self, scope: u8) {
        if let Some(ResponseEdns {
            client_subnet: Some((_, s)),
            ..
        }) = &mut self.edns
        {
            *s = scope;
        }
    }

    /// Sets the AA bit.
    pub fn set_authoritative(&mut self, aa: bool) {
        self.aa = aa;
    }

    /// Sets the RCODE.
    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.rcode = rcode;
    }

    /// The RCODE set so far.
    pub fn rcode(&self) -> Rcode {
        self.rcode
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True before anything past the question is written.
    pub fn is_empty(&self) -> bool {
        self.buf.len() <= self.question_end
    }

    /// Number of records in the answer section so far.
    pub fn answer_count(&self) -> u16 {
        self.counts[0]
    }

    fn room(&self) -> usize {
        self.limit.saturating_sub(self.opt_len)
    }

    /// Writes one RRset. Records go in the order given.
    pub fn rrset<'r>(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdatas: impl IntoIterator<Item = &'r [u8]>,
    ) {
        if section == Section::Additional && self.additional_closed {
            return;
        }
        let mark = self.buf.len();
        let mut written = 0u16;
        for rdata in rdatas {
            self.owner(owner);
            self.buf.extend_from_slice(&rtype.to_be_bytes());
            self.buf.extend_from_slice(&self.class.to_be_bytes());
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            let rdlen = u16::try_from(rdata.len()).unwrap_or(u16::MAX);
            self.buf.extend_from_slice(&rdlen.to_be_bytes());
            self.buf.extend_from_slice(rdata);
            written = written.saturating_add(1);
        }
        if self.buf.len() > self.room() {
            if section == Section::Additional {
                self.buf.truncate(mark);
                self.additional_closed = true;
                return;
            }
            self.overflow = true;
        }
        let slot = match section {
            Section::Answer => 0,
            Section::Authority => 1,
            Section::RequiredAdditional | Section::Additional => 2,
        };
        if let Some(c) = self.counts.get_mut(slot) {
            *c = c.saturating_add(written);
        }
    }

    fn owner(&mut self, owner: Owner<'_>) {
        match owner {
            Owner::Question(offset) => {
                let ptr = 0xC000u16 | u16::try_from(HEADER_LEN + offset).unwrap_or(0x3FFF);
                self.buf.extend_from_slice(&ptr.to_be_bytes());
            }
            Owner::Wire(name) => self.buf.extend_from_slice(name),
        }
    }

    /// The zone whose wildcard answered the QNAME (a fixed hash of its apex), if one did:
    /// what response rate limiting keys the answer on (`dns::rrl`).
    pub fn wildcard_zone(&self) -> Option<u64> {
        self.wildcard_zone
    }

    /// Patches the header, appends OPT, and truncates (TC=1) if required data did not fit.
    /// Returns the RCODE sent and whether the response was truncated.
    pub fn finish(mut self) -> (Rcode, bool) {
        if self.overflow {
            self.buf.truncate(self.question_end);
            self.counts = [0; 3];
        }
        let mut arcount = self.counts[2];
        if let Some(edns) = self.edns {
            arcount = arcount.saturating_add(1);
            self.write_opt(edns);
        }
        let rcode_low = (self.rcode as u16 & 0x0F) as u8;
        let counts = [
            self.counts[0].to_be_bytes(),
            self.counts[1].to_be_bytes(),
            arcount.to_be_bytes(),
        ];
        if let Some([_, _, flags, low, _, _, an0, an1, ns0, ns1, ar0, ar1]) =
            self.buf.get_mut(..HEADER_LEN)
        {
            *flags |= (u8::from(self.aa) << 2) | (u8::from(self.overflow) << 1);
            *low |= rcode_low;
            [*an0, *an1] = counts[0];
            [*ns0, *ns1] = counts[1];
            [*ar0, *ar1] = counts[2];
        }
        (self.rcode, self.overflow)
    }

    fn write_opt(&mut self, edns: ResponseEdns) {
        let ext_rcode = ((self.rcode as u16) >> 4) as u8;
        self.buf.push(0); // root
        self.buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
        self.buf.extend_from_slice(&edns.udp_size.to_be_bytes());
        self.buf.push(ext_rcode);
        self.buf.push(0); // version 0
        self.buf
            .extend_from_slice(&(if edns.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        match edns.client_subnet {
            Some((ecs, scope)) => {
                let addr_len = usize::from(ecs.source_prefix).div_ceil(8);
                let opt_len = 4 + addr_len;
                self.buf
                    .extend_from_slice(&u16::try_from(4 + opt_len).unwrap_or(0).to_be_bytes());
                self.buf.extend_from_slice(&OPTION_ECS.to_be_bytes());
                self.buf
                    .extend_from_slice(&u16::try_from(opt_len).unwrap_or(0).to_be_bytes());
                self.buf.extend_from_slice(&ecs.family().to_be_bytes());
                self.buf.push(ecs.source_prefix);
                // RFC 7871 §7.2.1: the scope may be longer than the source prefix when the
                // answer depends on more bits than the resolver sent; only the family bounds it.
                let max = if ecs.addr.is_ipv4() { 32 } else { 128 };
                self.buf.push(scope.min(max));
                let (octets, len) = match ecs.addr {
                    IpAddr::V4(a) => {
                        let [a, b, c, d] = a.octets();
                        ([a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 4)
                    }
                    IpAddr::V6(a) => (a.octets(), 16),
                };
                self.buf
                    .extend_from_slice(octets.get(..addr_len.min(len)).unwrap_or(&[]));
            }
            None => self.buf.extend_from_slice(&0u16.to_be_bytes()),
        }
    }
}

/// The query path's sink: routing's lookup writes straight into the response buffer.
impl AnswerSink for Writer<'_> {
    #[inline]
    fn answered_from_wildcard(&mut self, apex: &[u8]) {
        use std::hash::BuildHasher;
        self.wildcard_zone = Some(foldhash::fast::FixedState::with_seed(0).hash_one(apex));
    }

    #[inline]
    fn set_rcode(&mut self, rcode: Rcode) {
        Writer::set_rcode(self, rcode);
    }

    #[inline]
    fn set_authoritative(&mut self, aa: bool) {
        Writer::set_authoritative(self, aa);
    }

    #[inline]
    fn answer_count(&self) -> u16 {
        Writer::answer_count(self)
    }

    #[inline]
    fn rrset<'r>(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdatas: impl IntoIterator<Item = &'r [u8]>,
    ) {
        Writer::rrset(self, section, owner, rtype, ttl, rdatas);
    }
}
