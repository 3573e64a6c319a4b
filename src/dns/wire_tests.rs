use super::*;

fn query(name: &[u8], qtype: u16, additional: &[u8], arcount: u16) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
    p.extend_from_slice(&arcount.to_be_bytes());
    p.extend_from_slice(name);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p.extend_from_slice(additional);
    p
}

fn opt(options: &[u8]) -> Vec<u8> {
    let mut o = vec![0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0x00];
    o.extend_from_slice(&(options.len() as u16).to_be_bytes());
    o.extend_from_slice(options);
    o
}

fn ecs(family: u16, source: u8, addr: &[u8]) -> Vec<u8> {
    ecs_scoped(family, source, 0, addr)
}

fn ecs_scoped(family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
    let mut o = vec![0, 8];
    o.extend_from_slice(&((4 + addr.len()) as u16).to_be_bytes());
    o.extend_from_slice(&family.to_be_bytes());
    o.push(source);
    o.push(scope);
    o.extend_from_slice(addr);
    o
}

fn opt_version(version: u8, options: &[u8]) -> Vec<u8> {
    let mut o = opt(options);
    o[6] = version;
    o
}

/// A record of `rtype` with empty RDATA, owned by the root.
fn record(rtype: u16) -> Vec<u8> {
    let mut r = vec![0];
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    r
}

fn with_counts(mut p: Vec<u8>, an: u16, ns: u16) -> Vec<u8> {
    p[6..8].copy_from_slice(&an.to_be_bytes());
    p[8..10].copy_from_slice(&ns.to_be_bytes());
    p
}

#[test]
fn parses_and_lowercases_the_question() {
    let q = parse(&query(b"\x03WwW\x04TeSt\x00", 1, &[], 0)).unwrap();
    assert_eq!(q.lname(), b"\x03www\x04test\x00");
    assert_eq!(q.label_count(), 2);
    assert_eq!(q.label_offset(1), 4);
    assert_eq!(q.label_offset(2), 9);
    assert_eq!(q.qtype, 1);
    assert_eq!(q.id, 0x1234);
    assert!(q.rd);
    assert_eq!(q.edns, None);
}

#[test]
fn reads_edns_and_a_valid_client_subnet() {
    let p = query(b"\x00", 1, &opt(&ecs(1, 24, &[2, 2, 3])), 1);
    let q = parse(&p).unwrap();
    let edns = q.edns.unwrap();
    assert_eq!(edns.udp_size, 4096);
    assert!(edns.dnssec_ok);
    assert_eq!(
        edns.client_subnet,
        Some(ClientSubnet {
            addr: "2.2.3.0".parse().unwrap(),
            source_prefix: 24
        })
    );
}

#[test]
fn rejects_bad_packets_with_the_right_outcome() {
    let good = query(b"\x01a\x00", 1, &[], 0);
    let cases: Vec<(&str, Vec<u8>, ParseError)> = vec![
        ("short header", vec![0; 11], ParseError::Drop),
        (
            "response",
            {
                let mut p = good.clone();
                p[2] |= 0x80;
                p
            },
            ParseError::Drop,
        ),
        (
            "update opcode",
            {
                let mut p = good.clone();
                p[2] = 5 << 3;
                p
            },
            ParseError::NotImp,
        ),
        (
            "two questions",
            {
                let mut p = good.clone();
                p[5] = 2;
                p
            },
            ParseError::FormErr,
        ),
        (
            "truncated name",
            query(b"\x05ab", 1, &[], 0)[..15].to_vec(),
            ParseError::FormErr,
        ),
        (
            "pointer in question",
            query(b"\xc0\x0c", 1, &[], 0),
            ParseError::FormErr,
        ),
        (
            "reserved label type",
            query(b"\x41a\x00", 1, &[], 0),
            ParseError::FormErr,
        ),
        (
            "missing qtype",
            good[..good.len() - 3].to_vec(),
            ParseError::FormErr,
        ),
        (
            "two OPT",
            query(b"\x00", 1, &[opt(&[]), opt(&[])].concat(), 2),
            ParseError::FormErr,
        ),
        (
            "ECS bad family",
            query(b"\x00", 1, &opt(&ecs(3, 0, &[])), 1),
            ParseError::FormErr,
        ),
        (
            "ECS prefix too long",
            query(b"\x00", 1, &opt(&ecs(1, 33, &[1, 2, 3, 4, 5])), 1),
            ParseError::FormErr,
        ),
        (
            "ECS address too long",
            query(b"\x00", 1, &opt(&ecs(1, 16, &[1, 2, 3])), 1),
            ParseError::FormErr,
        ),
        (
            "ECS bits past prefix",
            query(b"\x00", 1, &opt(&ecs(1, 23, &[2, 2, 3])), 1),
            ParseError::FormErr,
        ),
        (
            "additional count past end",
            query(b"\x00", 1, &[], 1),
            ParseError::FormErr,
        ),
        (
            "ECS with a non-zero scope",
            query(b"\x00", 1, &opt(&ecs_scoped(1, 24, 8, &[10, 1, 2])), 1),
            ParseError::FormErr,
        ),
        (
            "OPT in the answer section",
            with_counts(query(b"\x00", 1, &opt(&[]), 0), 1, 0),
            ParseError::FormErr,
        ),
        (
            "OPT in the authority section",
            with_counts(query(b"\x00", 1, &opt(&[]), 0), 0, 1),
            ParseError::FormErr,
        ),
        (
            "trailing bytes",
            query(b"\x00", 1, &[1, 2], 0),
            ParseError::FormErr,
        ),
    ];
    for (what, packet, want) in cases {
        assert_eq!(parse(&packet).err(), Some(want), "{what}");
    }
}

#[test]
fn other_records_in_answer_and_authority_are_skipped() {
    let p = with_counts(query(b"\x00", 1, &[record(1), record(2)].concat(), 0), 1, 1);
    assert!(parse(&p).is_ok());
}

#[test]
fn an_unknown_edns_version_is_read_without_judging_its_options() {
    // A truncated option (length 16, one byte present) under version 1: the version wins.
    let bad_option = [0, 8, 0, 16, 0];
    let q = parse(&query(b"\x00", 1, &opt_version(1, &bad_option), 1)).unwrap();
    let edns = q.edns.unwrap();
    assert_eq!((edns.version, edns.client_subnet), (1, None));
    // The same option under version 0 is FORMERR.
    assert_eq!(
        parse(&query(b"\x00", 1, &opt_version(0, &bad_option), 1)).err(),
        Some(ParseError::FormErr)
    );
}

#[test]
fn salvage_finds_the_question_and_the_opt_of_rejected_packets() {
    let with_opt = |p: Vec<u8>| salvage(&p);
    let edns = Some(Edns {
        udp_size: 4096,
        version: 0,
        dnssec_ok: true,
        client_subnet: None,
    });
    let q_end = HEADER_LEN + 3 + 4;
    let cases: Vec<(&str, Vec<u8>, Salvage)> = vec![
        (
            "bad ECS",
            query(b"\x01a\x00", 1, &opt(&ecs_scoped(1, 24, 8, &[10, 1, 2])), 1),
            Salvage {
                question_end: Some(q_end),
                edns,
            },
        ),
        (
            "OPT in answer, OPT in additional",
            with_counts(
                query(b"\x01a\x00", 1, &[opt(&[]), opt(&[])].concat(), 1),
                1,
                0,
            ),
            Salvage {
                question_end: Some(q_end),
                edns,
            },
        ),
        (
            "no question, OPT",
            {
                let mut p = query(b"", 1, &[], 1);
                p.truncate(HEADER_LEN);
                p[5] = 0;
                p.extend_from_slice(&opt(&[]));
                p
            },
            Salvage {
                question_end: None,
                edns,
            },
        ),
        (
            "truncated question",
            query(b"\x05ab", 1, &[], 0)[..15].to_vec(),
            Salvage::default(),
        ),
        (
            "trailing bytes, no OPT",
            query(b"\x01a\x00", 1, &[1, 2], 0),
            Salvage {
                question_end: Some(q_end),
                edns: None,
            },
        ),
    ];
    for (what, packet, want) in cases {
        assert_eq!(with_opt(packet), want, "{what}");
    }
}

#[test]
fn a_name_over_255_bytes_is_formerr() {
    let mut name = Vec::new();
    for _ in 0..5 {
        name.push(63);
        name.extend_from_slice(&[b'a'; 63]);
    }
    name.push(0);
    assert_eq!(
        parse(&query(&name, 1, &[], 0)).err(),
        Some(ParseError::FormErr)
    );
}
