use std::str::FromStr;

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::MX;

use super::*;
use crate::dnssec::key::canonical_name;
use crate::dnssec::key::tests::{
    RFC6605_KEY, RFC6605_PRIVATE, RFC8080_KEY, RFC8080_PRIVATE, load_text,
};

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rfc8080_mx_signature_is_reproduced_exactly() {
    // RFC 8080 §6.1: Ed25519 is deterministic, so the published RRSIG must come out byte for byte.
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = load_text(d.path(), "K", RFC8080_KEY, RFC8080_PRIVATE, "example.com.")
        .unwrap_or_else(|e| panic!("{e}"));
    let mx = RData::MX(MX::new(10, name("Mail.Example.com.")));
    let rdata = canonical_rdata(&mx).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rdata, b"\x00\x0a\x04mail\x07example\x03com\x00");
    let apex = canonical_name(&name("example.com."));
    let validity = Validity {
        inception: 1_438_207_200,
        expiration: 1_440_021_600,
    };
    let sig = sign_rrset(&key, &apex, &apex, 15, 3600, &[&rdata], validity)
        .unwrap_or_else(|| panic!("sign"));
    let expected = data_encoding::BASE64
        .decode(b"oL9krJun7xfBOIWcGHi7mag5/hdZrKWw15jPGrHpjQeRAvTdszaPD+QLs3fx8A4M3e23mRZ9VrbpMngwcrqNAg==")
        .unwrap_or_else(|e| panic!("{e}"));
    let head_len = sig.len() - 64;
    assert_eq!(sig.get(head_len..), Some(&expected[..]));
    // Head: type MX, alg 15, 2 labels, TTL, expiration, inception, tag 3613, signer.
    assert_eq!(sig.get(..4), Some(&[0, 15, 15, 2][..]));
    assert_eq!(sig.get(16..18), Some(&3613u16.to_be_bytes()[..]));
}

#[test]
fn ecdsa_signature_verifies_and_order_and_duplicates_do_not_matter() {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = load_text(d.path(), "K", RFC6605_KEY, RFC6605_PRIVATE, "example.net.")
        .unwrap_or_else(|e| panic!("{e}"));
    let apex = canonical_name(&name("example.net."));
    let owner = canonical_name(&name("www.example.net."));
    let v = Validity {
        inception: 1,
        expiration: 2,
    };
    let a: &[u8] = &[192, 0, 2, 1];
    let b: &[u8] = &[192, 0, 2, 2];
    let sig =
        sign_rrset(&key, &apex, &owner, 1, 30, &[b, a, b], v).unwrap_or_else(|| panic!("sign"));
    let head = sig.get(..sig.len() - 64).unwrap_or(&[]);
    let data = signed_data(head, &owner, 1, 30, &[a, b]);
    let public = [&[4u8][..], &key.public].concat();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &public)
        .verify(&data, sig.get(head.len()..).unwrap_or(&[]))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn labels_skip_root_and_wildcard() {
    assert_eq!(label_count(&canonical_name(&name("."))), 0);
    assert_eq!(label_count(&canonical_name(&name("www.example.com."))), 3);
    assert_eq!(label_count(&canonical_name(&name("*.example.com."))), 2);
    assert_eq!(label_count(&canonical_name(&name("a.*.example.com."))), 4);
}

#[test]
fn bitmaps_follow_rfc4034_example() {
    // RFC 4034 §4.3: A MX RRSIG NSEC TYPE1234.
    assert_eq!(
        type_bitmap(&[1, 15, 46, 47, 1234]),
        vec![
            0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20
        ]
    );
    // RFC 9824: NXNAME (128) sits in window 0, octet 16.
    let nx = type_bitmap(&[TYPE_NXNAME, TYPE_NSEC, TYPE_RRSIG]);
    assert_eq!(nx.get(..2), Some(&[0u8, 17][..]));
    assert_eq!(nx.last(), Some(&0x80));
    assert_eq!(successor(b"\x03www\x00"), b"\x01\x00\x03www\x00");
    // At 255 bytes there is no room for another label: the first label's last octet rises.
    let mut long = Vec::new();
    for len in [63usize, 63, 63, 61] {
        long.push(len as u8);
        long.extend(std::iter::repeat_n(b'a', len));
    }
    long.push(0);
    assert_eq!(long.len(), 255);
    let next = successor(&long);
    assert_eq!(next.len(), long.len());
    assert!(next > long);
    assert_eq!(next.get(63), Some(&b'b'));
}
