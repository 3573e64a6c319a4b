//! The DNS vocabulary both sides of the query path speak: record types and classes, the
//! parsed query, the EDNS Client Subnet option, response codes, sections and owner names.
//!
//! A leaf: it depends on no other module of the crate. `routing` decides an answer in these
//! terms and `dns` parses and encodes them, so `dns -> routing` stays the only direction
//! (routing never imports dns). Plain values only: no parsing, no encoding, no I/O.

use std::net::IpAddr;

/// Largest name in wire form (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;

/// Record types the handler treats specially.
pub mod qtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Canonical name.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Delegation signer (lives on the parent side of a cut).
    pub const DS: u16 = 43;
    /// Transaction key (RFC 2930), a meta-type: not served.
    pub const TKEY: u16 = 249;
    /// Transaction signature (RFC 8945), a meta-type: not served.
    pub const TSIG: u16 = 250;
    /// Incremental zone transfer.
    pub const IXFR: u16 = 251;
    /// Full zone transfer.
    pub const AXFR: u16 = 252;
    /// Obsolete mailbox meta-queries.
    pub const MAILB: u16 = 253;
    /// Obsolete mail agent meta-query.
    pub const MAILA: u16 = 254;
    /// Any type (RFC 8482 minimal answers).
    pub const ANY: u16 = 255;
}

/// DNS classes.
pub mod qclass {
    /// Internet.
    pub const IN: u16 = 1;
    /// Chaos (server identity queries).
    pub const CH: u16 = 3;
    /// Any class.
    pub const ANY: u16 = 255;
}

/// The EDNS Client Subnet option of a query, validated (RFC 7871 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The address, with every bit past `source_prefix` zero.
    pub addr: IpAddr,
    /// SOURCE PREFIX-LENGTH.
    pub source_prefix: u8,
}

impl ClientSubnet {
    /// FAMILY as sent (1 = IPv4, 2 = IPv6).
    pub fn family(&self) -> u16 {
        match self.addr {
            IpAddr::V4(_) => 1,
            IpAddr::V6(_) => 2,
        }
    }
}

/// The OPT record of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub udp_size: u16,
    /// EDNS version (only 0 is known).
    pub version: u8,
    /// DNSSEC OK bit, echoed in the response (RFC 3225).
    pub dnssec_ok: bool,
    /// ECS option, when present and valid.
    pub client_subnet: Option<ClientSubnet>,
}

/// A parsed query. Fixed-size, lives on the stack.
#[derive(Clone, Debug)]
pub struct Query {
    /// Message ID.
    pub id: u16,
    /// OPCODE (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired, echoed.
    pub rd: bool,
    /// Checking disabled, echoed.
    pub cd: bool,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// End of the question in the packet (header + QNAME + 4).
    pub question_end: usize,
    /// OPT record, if any.
    pub edns: Option<Edns>,
    /// QNAME in wire form, lowercased (the first `lname_len` bytes); filled by the parser.
    pub(crate) lname: [u8; MAX_NAME_LEN],
    pub(crate) lname_len: u8,
    /// Where each label starts in `lname` (the first `label_count`).
    pub(crate) label_offsets: [u8; 128],
    pub(crate) label_count: u8,
}

impl Query {
    /// The QNAME in wire form, lowercased.
    pub fn lname(&self) -> &[u8] {
        self.lname.get(..usize::from(self.lname_len)).unwrap_or(&[])
    }

    /// Number of labels in QNAME, the root not counted.
    pub fn label_count(&self) -> usize {
        usize::from(self.label_count)
    }

    /// Byte offset in the (lowercased) QNAME where label `i` starts; `label_count()` gives the root.
    pub fn label_offset(&self, i: usize) -> usize {
        if i >= self.label_count() {
            return usize::from(self.lname_len).saturating_sub(1);
        }
        self.label_offsets.get(i).map_or(0, |&o| usize::from(o))
    }
}

/// Response codes the server sends (the low four bits, plus BADVERS via EDNS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// Format error.
    FormErr = 1,
    /// Server failure.
    ServFail = 2,
    /// Name does not exist.
    NxDomain = 3,
    /// Not implemented.
    NotImp = 4,
    /// Refused.
    Refused = 5,
    /// Bad EDNS version (extended RCODE 16, RFC 6891 §6.1.3).
    BadVers = 16,
}

impl Rcode {
    /// All codes, in the order metrics index them.
    pub const ALL: [Rcode; 7] = [
        Rcode::NoError,
        Rcode::FormErr,
        Rcode::ServFail,
        Rcode::NxDomain,
        Rcode::NotImp,
        Rcode::Refused,
        Rcode::BadVers,
    ];

    /// Mnemonic, as dig prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::FormErr => "FORMERR",
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::NotImp => "NOTIMP",
            Rcode::Refused => "REFUSED",
            Rcode::BadVers => "BADVERS",
        }
    }

    /// Position in [`Rcode::ALL`].
    pub fn index(self) -> usize {
        match self {
            Rcode::NoError => 0,
            Rcode::FormErr => 1,
            Rcode::ServFail => 2,
            Rcode::NxDomain => 3,
            Rcode::NotImp => 4,
            Rcode::Refused => 5,
            Rcode::BadVers => 6,
        }
    }
}

/// Where an owner name comes from.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    /// A suffix of QNAME starting at this byte offset of the name: written as a pointer.
    Question(usize),
    /// An uncompressed wire-format name.
    Wire(&'a [u8]),
}

/// Response sections, in wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Answer.
    Answer,
    /// Authority.
    Authority,
    /// Additional data that must fit (referral glue) or the response is truncated.
    RequiredAdditional,
    /// Additional data that is left out when it does not fit.
    Additional,
}
