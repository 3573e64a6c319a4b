//! A zone's static records kept compactly: one after another in uncompressed wire form
//! (RFC 1035 §4.1.3, owner and names in RDATA uncompressed, letter case as configured), in
//! one allocation per zone.
//!
//! A hickory `Record` is 272 bytes before anything it points to; a record of a small zone is
//! 30 to 60 bytes in wire form. A zone lives in the model as long as it serves, so with many
//! small zones the records were the largest part of the model (issue 17: 100,000 zones of 10
//! records held 270 MB of `Record`s). The model keeps this form; what needs `RData` (the
//! compiler, the lint) decodes it, and the compiler takes each record's RDATA bytes as they
//! are stored. The loader's whole-zone checks key and size RRsets by the stored form.
//!
//! Owns: the encoding and the walk over the stored records. Must never: hold anything but
//! records that the loader validated (each decodes: the loader checked it did).

use std::fmt;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding,
};

/// Static records in wire form, in the order given.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RecordStore {
    wire: Box<[u8]>,
    count: u32,
}

/// One stored record, borrowed from its [`RecordStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored<'a> {
    /// The owner in uncompressed wire form, letter case as configured.
    pub owner: &'a [u8],
    /// TYPE.
    pub rtype: u16,
    /// TTL.
    pub ttl: u32,
    /// RDATA in wire form, names uncompressed.
    pub rdata: &'a [u8],
    /// The whole record (owner to RDATA).
    entry: &'a [u8],
}

impl Stored<'_> {
    /// The record type.
    pub fn record_type(&self) -> RecordType {
        RecordType::from(self.rtype)
    }

    /// The record decoded. `None` only for bytes no loader stored (every record the loader
    /// keeps decoded once already).
    pub fn record(&self) -> Option<Record> {
        Record::read(&mut BinDecoder::new(self.entry)).ok()
    }
}

/// Appends `name` in uncompressed wire form, letter case kept. What hickory's encoder writes
/// with `NameEncoding::Uncompressed`, without the copy of every label it keeps for
/// compressing later names (most of the cost of encoding a small record).
pub fn write_name(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        // A `Name` holds labels of 1 to 63 bytes.
        out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// `name` in uncompressed wire form, lowercased: the form names are keyed by (the routing
/// table's, the loader's checks, the lint). A `Name` lowercases ASCII letters only, as this.
pub fn name_key(name: &Name) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 2);
    write_name(name, &mut key);
    key.make_ascii_lowercase();
    key
}

/// Appends `rdata` in wire form, names uncompressed: the common types and the SOA directly,
/// the rest through hickory's encoder.
pub fn write_rdata(rdata: &RData, out: &mut Vec<u8>) -> Result<(), String> {
    match rdata {
        RData::A(a) => out.extend_from_slice(&a.0.octets()),
        RData::AAAA(a) => out.extend_from_slice(&a.0.octets()),
        RData::NS(n) => write_name(&n.0, out),
        RData::CNAME(n) => write_name(&n.0, out),
        RData::PTR(n) => write_name(&n.0, out),
        RData::MX(mx) => {
            out.extend_from_slice(&mx.preference.to_be_bytes());
            write_name(&mx.exchange, out);
        }
        RData::SOA(soa) => {
            write_name(&soa.mname, out);
            write_name(&soa.rname, out);
            out.extend_from_slice(&soa.serial.to_be_bytes());
            out.extend_from_slice(&soa.refresh.to_be_bytes());
            out.extend_from_slice(&soa.retry.to_be_bytes());
            out.extend_from_slice(&soa.expire.to_be_bytes());
            out.extend_from_slice(&soa.minimum.to_be_bytes());
        }
        other => {
            let mut scratch = Vec::new();
            let mut enc = BinEncoder::new(&mut scratch);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            other.emit(&mut enc).map_err(|e| e.to_string())?;
            out.extend_from_slice(&scratch);
        }
    }
    Ok(())
}

impl RecordStore {
    /// `records` encoded. Fails, naming the record, only if one cannot be written in wire form
    /// (the loader has checked every one can).
    pub fn new(records: &[Record]) -> Result<Self, String> {
        let mut wire = Vec::with_capacity(records.len() * 48);
        for r in records {
            write_name(&r.name, &mut wire);
            wire.extend_from_slice(&u16::from(r.record_type()).to_be_bytes());
            wire.extend_from_slice(&u16::from(r.dns_class).to_be_bytes());
            wire.extend_from_slice(&r.ttl.to_be_bytes());
            let at = wire.len();
            wire.extend_from_slice(&[0, 0]);
            write_rdata(&r.data, &mut wire)
                .map_err(|e| format!("{} {}: {e}", r.name, r.record_type()))?;
            let len = u16::try_from(wire.len() - at - 2).map_err(|_| {
                format!(
                    "{} {}: RDATA longer than 65,535 bytes",
                    r.name,
                    r.record_type()
                )
            })?;
            if let Some(slot) = wire.get_mut(at..at + 2) {
                slot.copy_from_slice(&len.to_be_bytes());
            }
        }
        Ok(Self {
            wire: wire.into_boxed_slice(),
            count: u32::try_from(records.len()).map_err(|_| "too many records".to_string())?,
        })
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the records take.
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// The records as stored, in order.
    pub fn entries(&self) -> Entries<'_> {
        Entries { rest: &self.wire }
    }

    /// The records decoded, in order.
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        self.entries().filter_map(|e| e.record())
    }
}

impl fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The walk over a [`RecordStore`].
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Stored<'a>;

    fn next(&mut self) -> Option<Stored<'a>> {
        let rest = self.rest;
        // Owner: labels up to the root label (stored uncompressed, so no pointers).
        let mut at = 0usize;
        loop {
            let len = usize::from(*rest.get(at)?);
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
        let owner = rest.get(..at)?;
        let fixed = rest.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([*fixed.first()?, *fixed.get(1)?]);
        let ttl = u32::from_be_bytes(fixed.get(4..8)?.try_into().ok()?);
        let rdlen = usize::from(u16::from_be_bytes(fixed.get(8..10)?.try_into().ok()?));
        let end = at + 10 + rdlen;
        let rdata = rest.get(at + 10..end)?;
        let entry = rest.get(..end)?;
        self.rest = rest.get(end..)?;
        Some(Stored {
            owner,
            rtype,
            ttl,
            rdata,
            entry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};

    /// What hickory's own encoder writes, names uncompressed.
    fn rdata_wire(rdata: &RData) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        rdata.emit(&mut enc).unwrap_or_else(|e| panic!("{e}"));
        buf
    }

    fn hickory_record_wire(record: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        record.emit(&mut enc).unwrap_or_else(|e| panic!("{e}"));
        buf
    }

    #[test]
    fn records_come_back_as_given_with_their_case_and_rdata_bytes() {
        let name = |s: &str| Name::from_ascii(s).unwrap_or_else(|e| panic!("{e}"));
        let records = vec![
            Record::from_rdata(
                name("WWW.Example.test."),
                300,
                RData::A(std::net::Ipv4Addr::new(192, 0, 2, 1).into()),
            ),
            Record::from_rdata(
                name("example.test."),
                3600,
                RData::MX(MX::new(10, name("Mail.Example.test."))),
            ),
            Record::from_rdata(
                name("txt.example.test."),
                60,
                RData::TXT(TXT::new(vec!["v=spf1 -all".into(), String::new()])),
            ),
            Record::from_rdata(
                name("alias.example.test."),
                5,
                RData::CNAME(CNAME(name("www.example.test."))),
            ),
        ];
        let store = RecordStore::new(&records).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.len(), 4);
        // Byte for byte what hickory's encoder writes, record after record.
        let hickory: Vec<u8> = records.iter().flat_map(hickory_record_wire).collect();
        assert_eq!(&*store.wire, hickory.as_slice());
        let back: Vec<Record> = store.iter().collect();
        assert_eq!(back, records);
        for (stored, record) in store.entries().zip(&records) {
            // Case kept, byte for byte (hickory's Name equality ignores case).
            let mut owner = Vec::new();
            write_name(&record.name, &mut owner);
            assert_eq!(stored.owner, owner.as_slice());
            assert_eq!(stored.rdata, rdata_wire(&record.data).as_slice());
            assert_eq!(stored.rtype, u16::from(record.record_type()));
            assert_eq!(stored.ttl, record.ttl);
            let decoded = stored.record().unwrap_or_else(|| panic!("decodes"));
            assert_eq!(decoded.name.to_ascii(), record.name.to_ascii());
        }
        assert!(store.wire_len() < 200, "{}", store.wire_len());
        assert_eq!(RecordStore::new(&[]).map(|s| s.is_empty()), Ok(true));
    }

    #[test]
    fn the_direct_encodings_are_hickorys() {
        let name = |s: &str| Name::from_ascii(s).unwrap_or_else(|e| panic!("{e}"));
        for rdata in [
            RData::A(std::net::Ipv4Addr::new(10, 1, 2, 3).into()),
            RData::AAAA(AAAA(std::net::Ipv6Addr::LOCALHOST)),
            RData::NS(NS(name("Ns1.Example.test."))),
            RData::CNAME(CNAME(name("."))),
            RData::PTR(PTR(name("host.example.test."))),
            RData::MX(MX::new(65535, name("mail.example.test."))),
            RData::SRV(SRV::new(1, 2, 3, name("Target.example.test."))),
            RData::TXT(TXT::new(vec!["a".repeat(255), "b".into()])),
            RData::SOA(SOA::new(
                name("Ns1.example.test."),
                name("hostmaster.example.test."),
                u32::MAX,
                -1,
                7200,
                i32::MAX,
                300,
            )),
        ] {
            let mut ours = Vec::new();
            write_rdata(&rdata, &mut ours).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ours, rdata_wire(&rdata), "{rdata:?}");
        }
        for n in ["Www.Example.test.", ".", "a.b.c.d.e.f.g."] {
            let mut ours = Vec::new();
            write_name(&name(n), &mut ours);
            let mut theirs = Vec::new();
            let mut enc = BinEncoder::new(&mut theirs);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            name(n).emit(&mut enc).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ours, theirs, "{n}");
        }
    }
}
