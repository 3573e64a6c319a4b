//! Validation of a zone file's static-data half: the SOA, `[[record]]` tables and the RFC 1035
//! master file named by `records_file`, each record parsed and wire-round-tripped, and the
//! whole-zone record rules (apex NS, CNAME alone, one TTL per RRset, RRset size).
//!
//! Part of the loader (`super`): errors name the file and key or line; the only I/O is reading
//! the master file (and what it includes) next to the zone file.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState;
use std::fs;
use std::path::Path;

use hickory_proto::rr::rdata::{SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use super::{At, Source, ZoneBuilder, ZoneError};
use crate::config::file::{RecordFile, SoaFile};
use crate::config::master::{self, Entry};
use crate::config::model::{
    DEFAULT_EXPIRE, DEFAULT_MINIMUM, DEFAULT_REFRESH, DEFAULT_RETRY, MAX_RRSET_WIRE, Zone,
};
use crate::config::{clip, clip_msg};

impl ZoneBuilder<'_> {
    pub(super) fn soa(&self, soa: &SoaFile, origin: &Name, ttl: u32) -> Result<Record, ZoneError> {
        let mname = self.name("soa.mname", &soa.mname, origin)?;
        let rname = self.name("soa.rname", &soa.rname, origin)?;
        let field = |key: &str, value: Option<u32>, default: u32| -> Result<i32, ZoneError> {
            let value = value.unwrap_or(default);
            i32::try_from(value)
                .map_err(|_| self.invalid(key, format!("{value} is above {}", i32::MAX)))
        };
        let refresh = field("soa.refresh", soa.refresh, DEFAULT_REFRESH)?;
        let retry = field("soa.retry", soa.retry, DEFAULT_RETRY)?;
        let expire = field("soa.expire", soa.expire, DEFAULT_EXPIRE)?;
        let minimum = self.ttl("soa.minimum", soa.minimum.unwrap_or(DEFAULT_MINIMUM))?;
        Ok(Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(
                mname, rname, soa.serial, refresh, retry, expire, minimum,
            )),
        ))
    }

    pub(super) fn record(
        &self,
        index: usize,
        record: &RecordFile,
        origin: &Name,
        default_ttl: u32,
    ) -> Result<Vec<Record>, ZoneError> {
        let key = format!("record[{index}]");
        let owner = self.owner(&format!("{key}.name"), &record.name, origin)?;
        let rtype: RecordType = record.rtype.to_ascii_uppercase().parse().map_err(|_| {
            self.invalid(
                format!("{key}.type"),
                format!("unknown record type `{}`", clip(&record.rtype)),
            )
        })?;
        if !SUPPORTED_TYPES.contains(&rtype) {
            return Err(self.invalid(
                format!("{key}.type"),
                format!(
                    "type {rtype} is not supported in [[record]] (supported: {})",
                    supported_list()
                ),
            ));
        }
        if rtype == RecordType::NS && owner == *origin {
            return Err(self.invalid(
                format!("{key}.type"),
                "apex NS records belong in the zone's `ns` list",
            ));
        }
        let ttl = self.ttl(&format!("{key}.ttl"), record.ttl.unwrap_or(default_ttl))?;
        if record.data.is_empty() {
            return Err(self.invalid(format!("{key}.data"), "needs at least one value"));
        }
        let mut out = Vec::with_capacity(record.data.len());
        for (j, text) in record.data.iter().enumerate() {
            let data_key = || format!("{key}.data[{j}]");
            let rdata = parse_rdata(rtype, text, origin).map_err(|e| {
                self.invalid(
                    data_key(),
                    format!("bad {rtype} data `{}`: {}", clip(text), clip_msg(&e)),
                )
            })?;
            let mut rec = Record::from_rdata(owner.clone(), ttl, rdata);
            rec.dns_class = DNSClass::IN;
            // Addresses and names are valid by construction; the other types go through the
            // check that found the bad CAA (and a TXT record over 65,535 bytes).
            let plain = matches!(
                rtype,
                RecordType::A
                    | RecordType::AAAA
                    | RecordType::CNAME
                    | RecordType::NS
                    | RecordType::PTR
                    | RecordType::MX
            );
            if !plain {
                check_wire_round_trip(&rec).map_err(|e| {
                    self.invalid(
                        data_key(),
                        format!("bad {rtype} data `{}`: {}", clip(text), clip_msg(&e)),
                    )
                })?;
            }
            out.push(rec);
        }
        Ok(out)
    }

    /// The records of the master file `rel`, and where each entry of it is (the parser
    /// keeps no lines, and folds a second CNAME into the first).
    pub(super) fn master_file(
        &self,
        rel: &str,
        origin: &Name,
    ) -> Result<(Vec<Record>, Vec<Entry>), ZoneError> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        let path = base.join(rel);
        let text = fs::read_to_string(&path).map_err(|source| ZoneError::Read {
            path: path.clone(),
            source,
        })?;
        let (_, sets) = Parser::new(text.as_str(), Some(path.clone()), Some(origin.clone()))
            .parse()
            .map_err(|e| ZoneError::MasterFile {
                path: path.clone(),
                message: clip_msg(&e),
            })?;
        let entries = master::scan(&path, &text, origin).map_err(|(path, line, message)| {
            ZoneError::MasterLine {
                path,
                line,
                message,
            }
        })?;
        // Meridian answers class IN only; a CH record would be served as IN (and the parser
        // gives every later record of the file the same class).
        if let Some((e, class)) = entries
            .iter()
            .find_map(|e| Some((e, e.class.filter(|c| *c != DNSClass::IN)?)))
        {
            return Err(ZoneError::MasterLine {
                path: e.path.clone(),
                line: e.line,
                message: format!("class {class}: only class IN is served"),
            });
        }
        let mut records = Vec::new();
        for set in sets.values() {
            for record in set.records_without_rrsigs() {
                if record.dns_class != DNSClass::IN {
                    return Err(ZoneError::MasterFile {
                        path: path.clone(),
                        message: format!(
                            "{} {}: class {}: only class IN is served",
                            record.name,
                            record.record_type(),
                            record.dns_class
                        ),
                    });
                }
                if !origin.zone_of(&record.name) {
                    return Err(ZoneError::MasterFile {
                        path: path.clone(),
                        message: format!("{} is outside the zone {origin}", record.name),
                    });
                }
                check_wire_round_trip(record).map_err(|e| ZoneError::MasterFile {
                    path: path.clone(),
                    message: format!("{} {}: {}", record.name, record.record_type(), clip(&e)),
                })?;
                records.push(record.clone());
            }
        }
        Ok((records, entries))
    }

    /// Every RRset fits one message with any question and OPT (RFC 2181 §9: an RRset is
    /// never split in an answer; a larger one could be served to nobody, nor transferred).
    /// `sets` holds each RRset's first record and size; the first too large in name order is
    /// the one reported.
    fn check_rrset_sizes(
        &self,
        records: &[Record],
        sets: &RrSets<'_>,
        sources: &[Source],
    ) -> Result<(), ZoneError> {
        let Some((owner, rtype, size)) = sets
            .values()
            .filter(|s| s.size > MAX_RRSET_WIRE)
            .filter_map(|s| {
                let r = records.get(s.first)?;
                Some((r.name.to_lowercase(), r.record_type(), s.size))
            })
            .min_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)))
        else {
            return Ok(());
        };
        let at = sources
            .iter()
            .find(|s| s.owner == owner && s.rtype == rtype)
            .map_or_else(|| At::Key("record".into()), |s| s.at.clone());
        Err(self.error_at(
            &at,
            true,
            format!(
                "{owner} {rtype} is {size} bytes in wire form; an RRset must fit one DNS \
                 message (at most {MAX_RRSET_WIRE} bytes)"
            ),
        ))
    }

    /// RFC 1034 §3.6.2: a CNAME stands alone. Names where both are, and errs at the other data.
    fn cname_and_other_data(&self, owner: &Name, sources: &[Source]) -> ZoneError {
        let at_owner = || sources.iter().filter(|s| s.owner == *owner);
        let cname = at_owner().find(|s| s.rtype == RecordType::CNAME);
        let other = at_owner().find(|s| s.rtype != RecordType::CNAME);
        match (cname, other) {
            (Some(cname), Some(other)) => self.error_at(
                &other.at,
                false,
                format!(
                    "{owner} has a CNAME (at {}) and other data ({} at {}); a CNAME stands \
                     alone (RFC 1034 §3.6.2)",
                    cname.at, other.rtype, other.at
                ),
            ),
            _ => self.invalid(
                "record",
                format!("{owner} has a CNAME and other data (RFC 1034 §3.6.2)"),
            ),
        }
    }

    /// Whole-zone rules: apex NS present, one CNAME at a name and alone there, one TTL per
    /// RRset, every RRset small enough for one message. `records` are the zone's records,
    /// `zone.records` the same in wire form.
    pub(super) fn check_records(
        &self,
        zone: &Zone,
        records: &[Record],
        sources: &[Source],
    ) -> Result<(), ZoneError> {
        if !records
            .iter()
            .any(|r| r.record_type() == RecordType::NS && r.name == zone.origin)
        {
            return Err(self.invalid("ns", "the zone has no apex NS records"));
        }
        // RFC 4035 §2.4: a DS lives on the parent side of a delegation, nowhere else.
        for s in sources.iter().filter(|s| s.rtype == RecordType::DS) {
            let at_cut = s.owner != zone.origin
                && records
                    .iter()
                    .any(|r| r.record_type() == RecordType::NS && r.name.to_lowercase() == s.owner);
            if !at_cut {
                return Err(self.error_at(
                    &s.at,
                    true,
                    format!(
                        "{} has a DS but no NS records: a DS belongs at a delegation (RFC 4035 §2.4)",
                        s.owner
                    ),
                ));
            }
        }
        // Counted as written: the master-file parser keeps only the last CNAME at a name.
        let mut cnames: BTreeMap<&Name, &At> = BTreeMap::new();
        for s in sources.iter().filter(|s| s.rtype == RecordType::CNAME) {
            if let Some(first) = cnames.insert(&s.owner, &s.at) {
                return Err(self.error_at(
                    &s.at,
                    false,
                    format!(
                        "{} has a second CNAME (the first is at {first}); a name has one CNAME \
                         (RFC 1034 §3.6.2, RFC 2181 §10.1)",
                        s.owner
                    ),
                ));
            }
        }
        // One pass (zones can be big) over the stored wire form, keyed by the lowercase
        // owner: per name how many records, per RRset its first record, TTL and size (each
        // record's bytes in a message, owner uncompressed).
        let keys: Vec<Vec<u8>> = zone
            .records
            .entries()
            .map(|e| e.owner.to_ascii_lowercase())
            .collect();
        let mut per_name: HashMap<&[u8], usize, RandomState> = HashMap::default();
        let mut sets: RrSets<'_> = HashMap::default();
        for (i, (stored, key)) in zone.records.entries().zip(&keys).enumerate() {
            *per_name.entry(key).or_default() += 1;
            let set = sets.entry((key, stored.rtype)).or_insert(RrSetSeen {
                first: i,
                ttl: stored.ttl,
                size: 0,
            });
            set.size += stored.owner.len() + 10 + stored.rdata.len();
        }
        self.check_rrset_sizes(records, &sets, sources)?;
        for (record, key) in records.iter().zip(&keys) {
            let rtype = record.record_type();
            if rtype == RecordType::CNAME {
                let owner = record.name.to_lowercase();
                if owner == zone.origin {
                    return Err(self.invalid("record", "a CNAME cannot stand at the zone apex"));
                }
                if per_name.get(key.as_slice()).is_some_and(|&n| n > 1) {
                    return Err(self.cname_and_other_data(&owner, sources));
                }
            }
            if let Some(first) = sets.get(&(key.as_slice(), u16::from(rtype))) {
                if first.ttl != record.ttl {
                    return Err(self.invalid(
                        "record",
                        format!(
                            "{} {rtype} has records with TTLs {} and {}; an RRset has one TTL (RFC 2181 §5.2)",
                            record.name.to_lowercase(),
                            first.ttl,
                            record.ttl
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An RRset as the whole-zone checks meet it: its first record, TTL and size in wire form.
struct RrSetSeen {
    first: usize,
    ttl: u32,
    size: usize,
}

/// RRsets by lowercase owner wire form and type.
type RrSets<'a> = HashMap<(&'a [u8], u16), RrSetSeen, RandomState>;

/// Types that `[[record]]` accepts.
pub const SUPPORTED_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CAA,
    RecordType::CNAME,
    RecordType::DS,
    RecordType::HTTPS,
    RecordType::MX,
    RecordType::NAPTR,
    RecordType::NS,
    RecordType::PTR,
    RecordType::SRV,
    RecordType::SSHFP,
    RecordType::SVCB,
    RecordType::TLSA,
    RecordType::TXT,
];

fn supported_list() -> String {
    SUPPORTED_TYPES
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses RDATA in presentation form. Names in it are relative to `origin` unless absolute.
/// Rejects a record that the text parser accepts but whose wire form a DNS parser rejects
/// (found by fuzzing: a CAA tag `issu%` was served, and clients failed to decode the whole
/// response). The record is encoded and decoded again, as a client would.
fn check_wire_round_trip(record: &Record) -> Result<(), String> {
    use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
    let bytes = record.to_bytes().map_err(|e| e.to_string())?;
    Record::from_bytes(&bytes)
        .map(|_| ())
        .map_err(|e| format!("its wire form does not decode: {e}"))
}

fn parse_rdata(rtype: RecordType, text: &str, origin: &Name) -> Result<RData, String> {
    if rtype == RecordType::DS {
        // A signed child's DS (served at the delegation, signed with the zone's keys).
        return crate::dnssec::key::parse_ds(text).map(|ds| RData::Unknown {
            code: RecordType::DS,
            rdata: hickory_proto::rr::rdata::NULL::with(ds),
        });
    }
    if rtype == RecordType::TXT {
        return parse_txt(text).map(RData::TXT);
    }
    // Addresses are most of a large zone's records: text that is an address as it stands is
    // what the master-file parser would make of it (one token, `FromStr` of std, as hickory
    // uses), without building a parser per record. Anything else takes the parser's way,
    // with its messages.
    match rtype {
        RecordType::A => {
            if let Ok(a) = text.parse::<std::net::Ipv4Addr>() {
                return Ok(RData::A(a.into()));
            }
        }
        RecordType::AAAA => {
            if let Ok(a) = text.parse::<std::net::Ipv6Addr>() {
                return Ok(RData::AAAA(a.into()));
            }
        }
        RecordType::CNAME | RecordType::NS | RecordType::PTR => {
            if let Some([target]) = plain_tokens::<1>(text) {
                if let Ok(name) = Name::parse(target, Some(origin)) {
                    return Ok(match rtype {
                        RecordType::CNAME => RData::CNAME(hickory_proto::rr::rdata::CNAME(name)),
                        RecordType::NS => RData::NS(hickory_proto::rr::rdata::NS(name)),
                        _ => RData::PTR(hickory_proto::rr::rdata::PTR(name)),
                    });
                }
            }
        }
        RecordType::MX => {
            if let Some([preference, exchange]) = plain_tokens::<2>(text) {
                if let (Ok(preference), Ok(exchange)) = (
                    preference.parse::<u16>(),
                    Name::parse(exchange, Some(origin)),
                ) {
                    return Ok(RData::MX(hickory_proto::rr::rdata::MX::new(
                        preference, exchange,
                    )));
                }
            }
        }
        _ => {}
    }
    parse_as_master_line(rtype, text, origin)
}

/// The `N` blank-separated tokens of `text` when it has exactly that many and each is made
/// of letters, digits and `.-_*` only: text the master-file parser would hand to
/// `Name::parse` (or a number) as it stands, with no `@`, escape, quote, comment or
/// parenthesis for it to interpret. Anything else (`None`) takes the parser's way.
fn plain_tokens<const N: usize>(text: &str) -> Option<[&str; N]> {
    let mut out = [""; N];
    let mut tokens = text.split_ascii_whitespace();
    for slot in out.iter_mut() {
        match tokens.next() {
            Some(t)
                if t.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*')
                }) =>
            {
                *slot = t;
            }
            _ => return None,
        }
    }
    tokens.next().is_none().then_some(out)
}

/// RDATA through the master-file parser, which resolves relative names against the origin:
/// what an operator means by `mail` in `10 mail`. The value is parsed as a one-line zone.
fn parse_as_master_line(rtype: RecordType, text: &str, origin: &Name) -> Result<RData, String> {
    let line = format!("@ 0 IN {rtype} {text}\n");
    let (_, sets) = Parser::new(line, None, Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    let mut rdata = sets
        .into_values()
        .flat_map(|set| {
            set.records_without_rrsigs()
                .map(|r| r.data.clone())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    match (rdata.pop(), rdata.is_empty()) {
        (Some(data), true) => Ok(data),
        _ => Err("expected exactly one record".to_string()),
    }
}

/// TXT in presentation form: quoted or bare character-strings separated by blanks, with `\"`,
/// `\\` and `\DDD` escapes. A string longer than 255 bytes is split into several
/// character-strings, as DKIM and SPF publishers expect.
pub fn parse_txt(text: &str) -> Result<TXT, String> {
    let mut strings: Vec<Vec<u8>> = Vec::new();
    let mut bytes = text.bytes().peekable();
    loop {
        while bytes.next_if(|b| b.is_ascii_whitespace()).is_some() {}
        let Some(first) = bytes.next() else { break };
        let quoted = first == b'"';
        let mut current = Vec::new();
        let mut pending = if quoted { None } else { Some(first) };
        loop {
            let b = match pending.take() {
                Some(b) => b,
                None => match bytes.next() {
                    Some(b) => b,
                    None if quoted => return Err("unterminated quoted string".into()),
                    None => break,
                },
            };
            match b {
                b'"' if quoted => break,
                b'"' => return Err("a quote inside an unquoted string".into()),
                b if !quoted && b.is_ascii_whitespace() => break,
                b'\\' => {
                    let Some(next) = bytes.next() else {
                        return Err("a backslash at the end".into());
                    };
                    if next.is_ascii_digit() {
                        let d2 = bytes.next().filter(u8::is_ascii_digit);
                        let d3 = bytes.next().filter(u8::is_ascii_digit);
                        let (Some(d2), Some(d3)) = (d2, d3) else {
                            return Err("\\DDD needs three digits".into());
                        };
                        let value = u32::from(next - b'0') * 100
                            + u32::from(d2 - b'0') * 10
                            + u32::from(d3 - b'0');
                        current.push(
                            u8::try_from(value).map_err(|_| format!("\\{value} is above 255"))?,
                        );
                    } else {
                        current.push(next);
                    }
                }
                b => current.push(b),
            }
        }
        if current.is_empty() {
            strings.push(current);
        } else {
            strings.extend(current.chunks(255).map(<[u8]>::to_vec));
        }
    }
    if strings.is_empty() {
        return Err("empty TXT data".into());
    }
    Ok(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_names_and_mx_parse_as_the_master_file_parser_parses_them() {
        let origin = Name::from_ascii("t.test.").unwrap();
        for (rtype, text) in [
            (RecordType::A, "192.0.2.1"),
            (RecordType::A, "0.0.0.0"),
            (RecordType::A, "255.255.255.255"),
            (RecordType::A, "192.0.2.300"),
            (RecordType::A, "01.2.3.4"),
            (RecordType::A, " 192.0.2.1 "),
            (RecordType::A, "192.0.2.1 192.0.2.2"),
            (RecordType::A, "::1"),
            (RecordType::A, ""),
            (RecordType::AAAA, "2001:db8::1"),
            (RecordType::AAAA, "2001:DB8::A"),
            (RecordType::AAAA, "::ffff:192.0.2.3"),
            (RecordType::AAAA, "::"),
            (RecordType::AAAA, "192.0.2.1"),
            (RecordType::AAAA, "2001:db8::1%eth0"),
            (RecordType::CNAME, "www"),
            (RecordType::CNAME, "Www.Other.test."),
            (RecordType::CNAME, "a.b"),
            (RecordType::CNAME, "*.wild"),
            (RecordType::CNAME, "under_score.t.test."),
            (RecordType::CNAME, "@"),
            (RecordType::CNAME, r"a\.b"),
            (RecordType::CNAME, "two words"),
            (RecordType::CNAME, "a..b"),
            (RecordType::CNAME, ""),
            (RecordType::NS, "ns1.other.test."),
            (RecordType::NS, " ns1 "),
            (RecordType::PTR, "host"),
            (RecordType::MX, "10 mail"),
            (RecordType::MX, "0 Mail.Other.test."),
            (RecordType::MX, "65535 ."),
            (RecordType::MX, "65536 mail"),
            (RecordType::MX, "-1 mail"),
            (RecordType::MX, "10"),
            (RecordType::MX, "10 mail extra"),
            (RecordType::MX, "10 @"),
            (RecordType::MX, "10 ( mail )"),
            (RecordType::MX, "10 mail ; comment"),
        ] {
            let fast = parse_rdata(rtype, text, &origin);
            let parser = parse_as_master_line(rtype, text, &origin);
            // Byte for byte: names compare without case.
            let wire = |r: &RData| {
                let mut out = Vec::new();
                crate::config::wire::write_rdata(r, &mut out).unwrap();
                out
            };
            match (&fast, &parser) {
                (Ok(a), Ok(b)) => assert_eq!(wire(a), wire(b), "{rtype} `{text}`"),
                (Err(_), Err(_)) => {}
                _ => panic!("{rtype} `{text}`: {fast:?} but the parser gives {parser:?}"),
            }
        }
    }
}
