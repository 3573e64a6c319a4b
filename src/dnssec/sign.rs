//! RRSIG generation over the canonical form of an RRset (RFC 4034 §3.1.8.1 and §6), and the
//! NSEC RDATA of compact denial of existence (RFC 9824, RFC 4034 §4.1.2).
//!
//! Inputs are already canonical: owners lowercase in uncompressed wire form, RDATA with the
//! names RFC 4034 §6.2 lists lowercased (`canonical_rdata`). Pure functions; the only side
//! effect is the signature's randomness (ECDSA).

use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::key::ZoneKey;

/// TYPE RRSIG.
pub const TYPE_RRSIG: u16 = 46;
/// TYPE NSEC.
pub const TYPE_NSEC: u16 = 47;
/// TYPE DNSKEY.
pub const TYPE_DNSKEY: u16 = 48;
/// TYPE DS.
pub const TYPE_DS: u16 = 43;
/// TYPE CDS (RFC 7344).
pub const TYPE_CDS: u16 = 59;
/// TYPE CDNSKEY (RFC 7344).
pub const TYPE_CDNSKEY: u16 = 60;
/// TYPE NXNAME (RFC 9824): in an NSEC bitmap, "this name does not exist".
pub const TYPE_NXNAME: u16 = 128;
/// CLASS IN.
const CLASS_IN: u16 = 1;

/// When signatures are valid: seconds since the epoch, as RRSIG carries them (RFC 4034
/// §3.1.5, serial-number arithmetic on 32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Validity {
    /// Signature inception.
    pub inception: u32,
    /// Signature expiration.
    pub expiration: u32,
}

/// RDATA in DNSSEC canonical form: names uncompressed, lowercased where RFC 4034 §6.2 (as
/// amended by RFC 6840 §5.1) says so.
pub fn canonical_rdata(rdata: &RData) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_canonical_form(true);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    rdata.emit(&mut enc).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Number of labels of a wire-form owner for the RRSIG Labels field: the root and a leading
/// `*` do not count (RFC 4034 §3.1.3).
pub fn label_count(owner: &[u8]) -> u8 {
    let mut count = 0u8;
    let mut pos = 0usize;
    let mut first = true;
    while let Some(&len) = owner.get(pos) {
        if len == 0 {
            break;
        }
        let wildcard = first && len == 1 && owner.get(pos + 1) == Some(&b'*');
        if !wildcard {
            count = count.saturating_add(1);
        }
        first = false;
        pos += 1 + usize::from(len);
    }
    count
}

/// The RRSIG RDATA up to (not including) the signature.
fn rrsig_head(
    key: &ZoneKey,
    signer: &[u8],
    owner: &[u8],
    rtype: u16,
    ttl: u32,
    validity: Validity,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + signer.len() + 64);
    out.extend_from_slice(&rtype.to_be_bytes());
    out.push(key.algorithm.number());
    out.push(label_count(owner));
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&validity.expiration.to_be_bytes());
    out.extend_from_slice(&validity.inception.to_be_bytes());
    out.extend_from_slice(&key.tag.to_be_bytes());
    out.extend_from_slice(signer);
    out
}

/// The data an RRSIG signs (RFC 4034 §3.1.8.1): the RRSIG RDATA without signature, then every
/// RR of the set in canonical order, duplicates removed.
fn signed_data(head: &[u8], owner: &[u8], rtype: u16, ttl: u32, rdatas: &[&[u8]]) -> Vec<u8> {
    let mut sorted: Vec<&[u8]> = rdatas.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let per_rr = owner.len() + 10;
    let mut data =
        Vec::with_capacity(head.len() + sorted.iter().map(|r| r.len() + per_rr).sum::<usize>());
    data.extend_from_slice(head);
    for rdata in sorted {
        data.extend_from_slice(owner);
        data.extend_from_slice(&rtype.to_be_bytes());
        data.extend_from_slice(&CLASS_IN.to_be_bytes());
        data.extend_from_slice(&ttl.to_be_bytes());
        data.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(u16::MAX).to_be_bytes());
        data.extend_from_slice(rdata);
    }
    data
}

/// RRSIG RDATA over the RRset `owner`/`rtype`/`ttl`/`rdatas` (all canonical), signed by `key`
/// for zone `signer` (canonical wire form). None only when the random source fails.
pub fn sign_rrset(
    key: &ZoneKey,
    signer: &[u8],
    owner: &[u8],
    rtype: u16,
    ttl: u32,
    rdatas: &[&[u8]],
    validity: Validity,
) -> Option<Vec<u8>> {
    let mut head = rrsig_head(key, signer, owner, rtype, ttl, validity);
    #[cfg_attr(not(debug_assertions), allow(unused_mut))]
    let mut signature = key.sign(&signed_data(&head, owner, rtype, ttl, rdatas))?;
    #[cfg(debug_assertions)]
    if rtype != TYPE_DNSKEY && CORRUPT_FOR_TESTS.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(last) = signature.last_mut() {
            *last ^= 0x01;
        }
    }
    head.extend_from_slice(&signature);
    Some(head)
}

/// TEST ONLY (`serve --dnssec-corrupt-signatures-for-tests`, hidden, debug builds only):
/// every signature made while this is set has its last octet flipped, except those over
/// DNSKEY RRsets, so the chain of trust holds and each signed answer is bogus. The system
/// test that proves a validating resolver answers SERVFAIL for a corrupted signature sets
/// it; nothing else may. A release build never reads it.
#[cfg(debug_assertions)]
pub static CORRUPT_FOR_TESTS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The NSEC type bitmap of `types` (RFC 4034 §4.1.2): per 256-type window, its number, the
/// bitmap length and the bitmap without trailing zero octets.
pub fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let mut sorted = types.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut i = 0usize;
    while let Some(&first) = sorted.get(i) {
        let window = first >> 8;
        let mut bits = [0u8; 32];
        let mut used = 0usize;
        while let Some(&t) = sorted.get(i) {
            if t >> 8 != window {
                break;
            }
            let low = usize::from(t & 0xFF);
            if let Some(b) = bits.get_mut(low / 8) {
                *b |= 0x80 >> (low % 8);
            }
            used = low / 8 + 1;
            i += 1;
        }
        out.push(u8::try_from(window).unwrap_or(0));
        out.push(u8::try_from(used).unwrap_or(32));
        out.extend_from_slice(bits.get(..used).unwrap_or(&[]));
    }
    out
}

/// NSEC RDATA: the next owner name (canonical wire form) and the bitmap of `types`.
pub fn nsec_rdata(next: &[u8], types: &[u16]) -> Vec<u8> {
    let mut out = next.to_vec();
    out.extend_from_slice(&type_bitmap(types));
    out
}

/// The "immediate successor" of `name` used by compact denial (RFC 9824 §3): `\000.name`.
/// A name too long for another label gets, instead, a name of its own length that sorts after
/// it (RFC 4470 §3.1.2): its first label with the last octet raised, or lengthened by a zero
/// octet when that octet is already 0xFF (and lowercase letters must not become uppercase ones:
/// raising stays within the canonical order of lowercased names).
pub fn successor(name: &[u8]) -> Vec<u8> {
    if name.len() + 2 <= MAX_NAME_WIRE {
        let mut out = Vec::with_capacity(name.len() + 2);
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(name);
        return out;
    }
    let mut out = name.to_vec();
    let first = usize::from(name.first().copied().unwrap_or(0));
    match out.get_mut(first) {
        Some(last) if first > 0 && *last < 0xFF => {
            *last += 1;
            // Raising an octet into 'A'..='Z' would sort as its lowercase form: skip past.
            if last.is_ascii_uppercase() {
                *last = b'[';
            }
        }
        _ => {}
    }
    out
}

/// Longest name in wire form (RFC 1035 §2.3.4).
const MAX_NAME_WIRE: usize = 255;

#[cfg(test)]
#[path = "sign_tests.rs"]
mod tests;
