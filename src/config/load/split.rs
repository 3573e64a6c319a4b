//! Cuts a TOML zone file at its top-level table headers so that its services can be
//! deserialized one at a time.
//!
//! `toml::from_str` builds a spanned document of the whole file before serde sees a value: for
//! a million services that document, the `ZoneFile` made from it and the model coexist, several
//! GB. A generated zone is mostly `[service.NAME]` tables, each independent of the others, so
//! the loader parses everything else (the *root*: origin, SOA, records, regions, checks) as one
//! small document and each service's run of tables as its own, validating and dropping each
//! before the next.
//!
//! The cut only uses the lexer (no token list is kept) and is conservative: a file it does not
//! understand plainly (a service's tables not contiguous, `service` written in a way it does
//! not recognise) gives `None`, and the loader parses the whole document as before. Any parse
//! error of a piece is reported by re-parsing the whole file, so messages (line, column, the
//! quoted line) are exactly those of a whole-file parse.

use toml_parser::Source;
use toml_parser::lexer::TokenKind;

/// A zone file cut in pieces (see the module doc).
#[derive(Debug, PartialEq)]
pub(super) struct Pieces<'a> {
    /// Everything but the service tables, in file order.
    pub root: String,
    /// One text per service: its contiguous run of `[service.NAME...]` tables, file order.
    pub services: Vec<&'a str>,
}

/// Where a table header starts and which service it belongs to (`None`: the root).
struct Header<'a> {
    start: usize,
    service: Option<&'a str>,
}

/// Cuts `text` into its root and per-service pieces; `None` when the file is not plainly
/// cut (the caller parses it whole) or has no service tables (nothing to gain).
pub(super) fn split(text: &str) -> Option<Pieces<'_>> {
    let headers = headers(text)?;
    let mut root = String::new();
    let mut services: Vec<&str> = Vec::new();
    let mut seen: std::collections::HashSet<&str, foldhash::fast::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(
            headers.len() / 2,
            foldhash::fast::RandomState::default(),
        );
    // The run of tables of the service being collected: its key and where it starts.
    let mut run: Option<(&str, usize)> = None;
    for (i, header) in headers.iter().enumerate() {
        let end = headers.get(i + 1).map_or(text.len(), |h| h.start);
        let piece = text.get(header.start..end)?;
        match (header.service, run) {
            (Some(key), Some((current, _))) if key == current => {}
            (service, open) => {
                if let Some((_, start)) = open {
                    services.push(text.get(start..header.start)?);
                }
                run = None;
                if let Some(key) = service {
                    // A service whose tables are interleaved with others': parse whole.
                    if !seen.insert(key) {
                        return None;
                    }
                    run = Some((key, header.start));
                }
            }
        }
        if header.service.is_none() {
            root.push_str(piece);
            // A header glued to the previous piece's last line would change its meaning.
            if !piece.is_empty() && !piece.ends_with('\n') {
                root.push('\n');
            }
        }
    }
    if let Some((_, start)) = run {
        services.push(text.get(start..)?);
    }
    if services.is_empty() {
        return None;
    }
    Some(Pieces { root, services })
}

/// The top-level table headers of `text`, with a first pseudo-header at 0 for the keys before
/// any table. `None` on anything unexpected (a lexer error is found again by the parser).
fn headers(text: &str) -> Option<Vec<Header<'_>>> {
    let source = Source::new(text);
    let mut out = vec![Header {
        start: 0,
        service: None,
    }];
    // At the start of a line, outside any value: where a header may begin.
    let mut line_start = true;
    // Open brackets and braces of the value being read (arrays and inline tables may span
    // lines).
    let mut depth: usize = 0;
    let mut tokens = source.lex();
    while let Some(token) = tokens.next() {
        let kind = token.kind();
        match kind {
            TokenKind::Eof => break,
            TokenKind::Whitespace | TokenKind::Comment => continue,
            TokenKind::Newline => {
                if depth == 0 {
                    line_start = true;
                }
                continue;
            }
            TokenKind::LeftSquareBracket if line_start && depth == 0 => {
                let start = token.span().start();
                // The header's keys up to its closing bracket: `[a.b]` or `[[a.b]]`. Only
                // the first two matter (no allocation: there are millions of headers).
                let mut keys: [Option<&str>; 2] = [None, None];
                let mut count = 0;
                let mut open = 1;
                for t in tokens.by_ref() {
                    match t.kind() {
                        TokenKind::RightSquareBracket if open == 1 => break,
                        TokenKind::RightSquareBracket => open -= 1,
                        TokenKind::LeftSquareBracket if count == 0 => open += 1,
                        TokenKind::Dot | TokenKind::Whitespace => {}
                        TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString => {
                            let key = source.get(t.span())?.as_str();
                            if let Some(slot) = keys.get_mut(count) {
                                *slot = Some(key);
                            }
                            count += 1;
                        }
                        _ => return None,
                    }
                }
                let service = match keys {
                    [Some("service"), Some(name)] => Some(name),
                    // `[service]` itself, or a quoted `"service"`: keys of services may follow
                    // in the root; the loader then parses the whole file.
                    _ => None,
                };
                out.push(Header { start, service });
                line_start = false;
                continue;
            }
            _ => {}
        }
        line_start = false;
        match kind {
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.checked_sub(1)?;
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_cut_from_the_root_in_file_order() {
        let text = "origin = \"t.\"\n[soa]\nserial = 1\n\
                    [service.a]\nttl = 5\n[[service.a.endpoint]]\nregion = \"eu\"\n\
                    [region.eu]\nlocation = [1.0,\n 2.0]\n\
                    [service.\"b.c\"]\n[service.\"b.c\".geo.country]\nGB = [\"eu\"]\n\
                    [[record]]\nname = \"x\"\n";
        let pieces = split(text).unwrap();
        assert_eq!(
            pieces.root,
            "origin = \"t.\"\n[soa]\nserial = 1\n[region.eu]\nlocation = [1.0,\n 2.0]\n\
             [[record]]\nname = \"x\"\n"
        );
        assert_eq!(
            pieces.services,
            [
                "[service.a]\nttl = 5\n[[service.a.endpoint]]\nregion = \"eu\"\n",
                "[service.\"b.c\"]\n[service.\"b.c\".geo.country]\nGB = [\"eu\"]\n"
            ]
        );
    }

    #[test]
    fn brackets_inside_values_strings_and_comments_are_not_headers() {
        let text = "origin = \"t.\"\ndata = [\n[1],\n\"[service.x]\"\n]\n# [service.y]\n\
                    s = '''\n[service.z]\n'''\n[service.a]\n";
        let pieces = split(text).unwrap();
        assert_eq!(pieces.services, ["[service.a]\n"]);
        assert!(pieces.root.contains("[service.z]"), "{}", pieces.root);
    }

    #[test]
    fn files_not_plainly_cut_are_parsed_whole() {
        for (label, text) in [
            ("no services", "origin = \"t.\"\n[region.eu]\n"),
            (
                "a service's tables interleaved with another's",
                "[service.a]\n[service.b]\n[[service.a.endpoint]]\n",
            ),
            ("a stray closing bracket", "x = ]\n[service.a]\n"),
        ] {
            assert_eq!(split(text), None, "{label}");
        }
        // `[service]` with dotted keys stays in the root (the loader sees services there and
        // parses the whole file).
        let pieces = split("[service]\na.ttl = 1\n[service.b]\n").unwrap();
        assert_eq!(pieces.root, "[service]\na.ttl = 1\n");
    }

    /// A zone with services of every shape, records, regions and a check.
    const ZONE: &str = "origin = \"t.test.\"\nns = [\"ns1.t.test.\"]\n[soa]\n\
        mname = \"ns1.t.test.\"\nrname = \"h.t.test.\"\nserial = 1\n\
        [region.eu]\nlocation = [53.35, -6.26]\ncountries = [\"GB\"]\n[region.us]\n\
        location = [39.04, -77.49]\n[check.web]\ntype = \"http\"\n\
        [service.www]\ncheck = \"web\"\nfallback = [\"192.0.2.99\"]\n\
        [service.www.geo]\ndefault = [\"us\", \"eu\"]\ncountry = { GB = [\"eu\"] }\n\
        [[service.www.endpoint]]\nregion = \"eu\"\naddress = \"192.0.2.1\"\n\
        [[service.www.endpoint]]\nregion = \"us\"\naddress = \"2001:db8::1\"\n\
        [[record]]\nname = \"mail\"\ntype = \"A\"\ndata = [\"192.0.2.25\"]\n\
        [service.\"api.v2\"]\nfailover = [\"us\", \"eu\"]\n\
        [[service.\"api.v2\".endpoint]]\nregion = \"us\"\naddress = \"192.0.2.2\"\n";

    #[test]
    fn a_zone_validates_the_same_cut_or_whole() {
        let path = std::path::Path::new("z.toml");
        let builder = super::super::ZoneBuilder::new(path, 7, None);
        let pieces = split(ZONE).unwrap();
        assert_eq!(pieces.services.len(), 2);
        let root = toml::from_str(&pieces.root).unwrap();
        let cut = builder.build(root, &pieces.services).unwrap();
        let whole = builder.build(toml::from_str(ZONE).unwrap(), &[]).unwrap();
        assert_eq!(format!("{cut:?}"), format!("{whole:?}"));
        assert_eq!(cut.services.len(), 2);
    }

    /// `count` failover services over two regions, after [`ZONE`]'s root.
    fn many(count: usize, bad: &[usize]) -> String {
        let mut text = ZONE.to_string();
        for s in 0..count {
            let address = if bad.contains(&s) {
                "10.0.0.x".to_string()
            } else {
                format!("10.0.{}.{}", s / 256, s % 256)
            };
            text += &format!(
                "[service.s{s}]\npolicy = \"failover\"\nfailover = [\"us\", \"eu\"]\n\
                 [[service.s{s}.endpoint]]\nregion = \"eu\"\naddress = \"{address}\"\n"
            );
        }
        text
    }

    #[test]
    fn pieces_validated_on_every_core_give_the_whole_files_model_and_first_error() {
        let path = std::path::Path::new("z.toml");
        let builder = super::super::ZoneBuilder::new(path, 7, None);
        let text = many(3 * super::super::PIECES_PER_TASK + 5, &[]);
        let pieces = split(&text).unwrap();
        let cut = builder
            .build(toml::from_str(&pieces.root).unwrap(), &pieces.services)
            .unwrap();
        let whole = builder.build(toml::from_str(&text).unwrap(), &[]).unwrap();
        assert_eq!(format!("{cut:?}"), format!("{whole:?}"));
        // Bad services in the first and the last block: the first one is the error, as in
        // the whole file.
        let last = 3 * super::super::PIECES_PER_TASK;
        let text = many(last + 5, &[700, last + 2]);
        let pieces = split(&text).unwrap();
        let cut = builder
            .build(toml::from_str(&pieces.root).unwrap(), &pieces.services)
            .unwrap_err()
            .to_string();
        let whole = builder
            .build(toml::from_str(&text).unwrap(), &[])
            .unwrap_err()
            .to_string();
        assert_eq!(cut, whole);
        assert!(cut.contains("service.s700."), "{cut}");
    }
}
