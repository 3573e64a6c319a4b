//! Parsing a DNS query off the wire, by hand, into stack buffers.
//!
//! This is the first thing the query path does with untrusted bytes, so it allocates nothing,
//! indexes nothing it has not bounds-checked, and turns every defect into a [`ParseError`]
//! that the handler maps to FORMERR, NOTIMP or a silent drop (RFC 1035 §4.1, RFC 6891,
//! RFC 7871).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::proto::{ClientSubnet, Edns, MAX_NAME_LEN, Query, qclass, qtype};

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// OPT pseudo-record type (RFC 6891).
pub const TYPE_OPT: u16 = 41;
/// EDNS Client Subnet option code (RFC 7871).
pub const OPTION_ECS: u16 = 8;

/// Why a packet could not be taken as a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Too short for a header, or a response: send nothing.
    Drop,
    /// Malformed: answer FORMERR (with the question if it parsed).
    FormErr,
    /// An opcode other than QUERY: answer NOTIMP.
    NotImp,
}

/// A bounds-checked cursor over a packet.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, ParseError> {
        let b = *self.buf.get(self.pos).ok_or(ParseError::FormErr)?;
        self.pos += 1;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::FormErr)?;
        let out = self.buf.get(self.pos..end).ok_or(ParseError::FormErr)?;
        self.pos = end;
        Ok(out)
    }

    /// Skips a possibly compressed name (in sections after the question).
    fn skip_name(&mut self) -> Result<(), ParseError> {
        let mut total = 0usize;
        loop {
            let len = self.u8()?;
            match len & 0xC0 {
                0x00 if len == 0 => return Ok(()),
                0x00 => {
                    total += usize::from(len) + 1;
                    if total > MAX_NAME_LEN {
                        return Err(ParseError::FormErr);
                    }
                    self.bytes(usize::from(len))?;
                }
                // A pointer ends the name; where it points is not our business when skipping.
                0xC0 => {
                    self.u8()?;
                    return Ok(());
                }
                _ => return Err(ParseError::FormErr),
            }
        }
    }
}

/// The header fields the handler needs even when the rest of the packet is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Message ID.
    pub id: u16,
    /// Second header byte's OPCODE.
    pub opcode: u8,
    /// RD bit.
    pub rd: bool,
    /// CD bit.
    pub cd: bool,
}

/// Reads the header of any packet long enough to have one.
pub fn header(packet: &[u8]) -> Option<Header> {
    let h = packet.get(..HEADER_LEN)?;
    let (b2, b3) = (*h.get(2)?, *h.get(3)?);
    Some(Header {
        id: u16::from_be_bytes([*h.first()?, *h.get(1)?]),
        opcode: (b2 >> 3) & 0x0F,
        rd: b2 & 0x01 != 0,
        cd: b3 & 0x10 != 0,
    })
}

/// Parses a query. Compression pointers are refused in the question (no client sends them and
/// they are the usual vehicle for loops).
pub fn parse(packet: &[u8]) -> Result<Query, ParseError> {
    let h = header(packet).ok_or(ParseError::Drop)?;
    let flags = packet.get(2).copied().ok_or(ParseError::Drop)?;
    if flags & 0x80 != 0 {
        return Err(ParseError::Drop); // QR=1: a response, never answer it
    }
    if h.opcode != 0 {
        return Err(ParseError::NotImp);
    }
    let mut c = Cursor {
        buf: packet,
        pos: 4,
    };
    let qdcount = c.u16()?;
    let ancount = c.u16()?;
    let nscount = c.u16()?;
    let arcount = c.u16()?;
    if qdcount != 1 {
        return Err(ParseError::FormErr);
    }

    let mut q = Query {
        id: h.id,
        opcode: h.opcode,
        rd: h.rd,
        cd: h.cd,
        qtype: 0,
        qclass: 0,
        question_end: 0,
        edns: None,
        lname: [0; MAX_NAME_LEN],
        lname_len: 0,
        label_offsets: [0; 128],
        label_count: 0,
    };
    let mut len = 0usize;
    loop {
        let label = c.u8()?;
        if label & 0xC0 != 0 {
            return Err(ParseError::FormErr);
        }
        let label_len = usize::from(label);
        if len + 1 + label_len > MAX_NAME_LEN {
            return Err(ParseError::FormErr);
        }
        if label_len == 0 {
            *q.lname.get_mut(len).ok_or(ParseError::FormErr)? = 0;
            len += 1;
            break;
        }
        let slot = q
            .label_offsets
            .get_mut(usize::from(q.label_count))
            .ok_or(ParseError::FormErr)?;
        *slot = u8::try_from(len).map_err(|_| ParseError::FormErr)?;
        q.label_count += 1;
        let text = c.bytes(label_len)?;
        let dst = q
            .lname
            .get_mut(len..len + 1 + label_len)
            .ok_or(ParseError::FormErr)?;
        if let Some((first, rest)) = dst.split_first_mut() {
            *first = label;
            for (d, s) in rest.iter_mut().zip(text) {
                *d = s.to_ascii_lowercase();
            }
        }
        len += 1 + label_len;
    }
    q.lname_len = u8::try_from(len).map_err(|_| ParseError::FormErr)?;
    q.qtype = c.u16()?;
    q.qclass = c.u16()?;
    q.question_end = c.pos;

    // Answer and authority sections have no business in a query, but are legal: skip them.
    // An OPT there is FORMERR (RFC 6891 §6.1.1: OPT lives in the additional section only).
    for _ in 0..(u32::from(ancount) + u32::from(nscount)) {
        if skip_record(&mut c)? == TYPE_OPT {
            return Err(ParseError::FormErr);
        }
    }
    for _ in 0..arcount {
        let start = c.pos;
        c.skip_name()?;
        let name_is_root = c.pos == start + 1 && packet.get(start) == Some(&0);
        let rtype = c.u16()?;
        if rtype != TYPE_OPT {
            c.u16()?;
            c.bytes(4)?;
            let rdlen = c.u16()?;
            c.bytes(usize::from(rdlen))?;
            continue;
        }
        // RFC 6891 §6.1.1: one OPT, owned by the root; more than one is FORMERR.
        if q.edns.is_some() || !name_is_root {
            return Err(ParseError::FormErr);
        }
        let udp_size = c.u16()?;
        let _ext_rcode = c.u8()?;
        let version = c.u8()?;
        let flags = c.u16()?;
        let rdlen = c.u16()?;
        let rdata = c.bytes(usize::from(rdlen))?;
        q.edns = Some(Edns {
            udp_size,
            version,
            dnssec_ok: flags & 0x8000 != 0,
            // RFC 6891 §6.1.3: the options of a version we do not know are not ours to judge;
            // the version is checked first and answered BADVERS whatever they hold.
            client_subnet: if version == 0 {
                parse_options(rdata)?
            } else {
                None
            },
        });
    }
    // Bytes past the last record mean the counts are wrong: FORMERR, as Knot and BIND say.
    if c.pos != packet.len() {
        return Err(ParseError::FormErr);
    }
    Ok(q)
}

/// What can be salvaged from a packet that [`parse`] rejected, for the error response:
/// the end of its question when exactly one parsed, and its OPT record when it had one
/// (RFC 6891 §6.1.1: a query with OPT gets a response with OPT, errors included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    /// End of the (single) question in the packet, when it parsed.
    pub question_end: Option<usize>,
    /// The first OPT record's fixed fields (never its options), when one was found.
    pub edns: Option<Edns>,
}

/// Reads what it can of a rejected packet (see [`Salvage`]); stops at the first defect.
/// Only the error path calls this, so it may walk the packet a second time.
pub fn salvage(packet: &[u8]) -> Salvage {
    let mut out = Salvage::default();
    let mut c = Cursor {
        buf: packet,
        pos: 4,
    };
    let (Ok(qdcount), Ok(ancount), Ok(nscount), Ok(arcount)) = (c.u16(), c.u16(), c.u16(), c.u16())
    else {
        return out;
    };
    for i in 0..qdcount {
        if question(&mut c).is_err() {
            return out;
        }
        if qdcount == 1 && i == 0 {
            out.question_end = Some(c.pos);
        }
    }
    for _ in 0..(u32::from(ancount) + u32::from(nscount)) {
        if skip_record(&mut c).is_err() {
            return out;
        }
    }
    for _ in 0..arcount {
        let Ok(()) = c.skip_name() else {
            return out;
        };
        let (Ok(rtype), Ok(class), Ok(_), Ok(version), Ok(flags)) =
            (c.u16(), c.u16(), c.u8(), c.u8(), c.u16())
        else {
            return out;
        };
        if rtype == TYPE_OPT {
            out.edns = Some(Edns {
                udp_size: class,
                version,
                dnssec_ok: flags & 0x8000 != 0,
                client_subnet: None,
            });
            return out;
        }
        let Ok(rdlen) = c.u16() else {
            return out;
        };
        if c.bytes(usize::from(rdlen)).is_err() {
            return out;
        }
    }
    out
}

/// Skips a question entry (name without pointers, type, class).
fn question(c: &mut Cursor<'_>) -> Result<(), ParseError> {
    let mut total = 0usize;
    loop {
        let len = c.u8()?;
        if len & 0xC0 != 0 {
            return Err(ParseError::FormErr);
        }
        total += usize::from(len) + 1;
        if total > MAX_NAME_LEN {
            return Err(ParseError::FormErr);
        }
        if len == 0 {
            break;
        }
        c.bytes(usize::from(len))?;
    }
    c.bytes(4)?;
    Ok(())
}

/// Skips one resource record; returns its TYPE.
fn skip_record(c: &mut Cursor<'_>) -> Result<u16, ParseError> {
    c.skip_name()?;
    let rtype = c.u16()?;
    c.bytes(6)?;
    let rdlen = c.u16()?;
    c.bytes(usize::from(rdlen))?;
    Ok(rtype)
}

/// Walks the OPT options; returns the ECS option if there is one. Unknown options are ignored
/// (RFC 6891 §6.1.2).
fn parse_options(rdata: &[u8]) -> Result<Option<ClientSubnet>, ParseError> {
    let mut c = Cursor { buf: rdata, pos: 0 };
    let mut ecs = None;
    while c.pos < rdata.len() {
        let code = c.u16()?;
        let len = c.u16()?;
        let data = c.bytes(usize::from(len))?;
        if code == OPTION_ECS {
            if ecs.is_some() {
                return Err(ParseError::FormErr);
            }
            ecs = Some(parse_ecs(data)?);
        }
    }
    Ok(ecs)
}

/// RFC 7871 §6: FAMILY 1 or 2, SOURCE PREFIX-LENGTH within the family, exactly
/// ceil(source/8) address bytes, and no bits set past the prefix; anything else is FORMERR.
fn parse_ecs(data: &[u8]) -> Result<ClientSubnet, ParseError> {
    let mut c = Cursor { buf: data, pos: 0 };
    let family = c.u16()?;
    let source_prefix = c.u8()?;
    // RFC 7871 §6: SCOPE PREFIX-LENGTH MUST be 0 in queries; a query that sets it is
    // malformed like any other bad ECS option: FORMERR.
    if c.u8()? != 0 {
        return Err(ParseError::FormErr);
    }
    let addr_bytes = &data.get(4..).ok_or(ParseError::FormErr)?;
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return Err(ParseError::FormErr),
    };
    if source_prefix > max || addr_bytes.len() != usize::from(source_prefix).div_ceil(8) {
        return Err(ParseError::FormErr);
    }
    let mut full = [0u8; 16];
    for (d, s) in full.iter_mut().zip(addr_bytes.iter()) {
        *d = *s;
    }
    // Bits past the prefix inside the last byte must be zero.
    let spare = (8 - source_prefix % 8) % 8;
    if spare > 0 {
        let last = addr_bytes.last().copied().unwrap_or(0);
        if last & ((1u8 << spare) - 1) != 0 {
            return Err(ParseError::FormErr);
        }
    }
    let addr = if family == 1 {
        let [a, b, c, d, ..] = full;
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    } else {
        IpAddr::V6(Ipv6Addr::from(full))
    };
    Ok(ClientSubnet {
        addr,
        source_prefix,
    })
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
