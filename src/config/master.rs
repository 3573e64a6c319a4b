//! Where each entry of an RFC 1035 master file (`records_file`) starts: its line, owner,
//! explicit class and type.
//!
//! hickory's parser builds the records; it keeps no line numbers and folds away what the
//! loader must reject (a class other than IN becomes every later record's class; a second
//! CNAME at a name replaces the first). This scan reads the same text once more for that
//! structure only, so errors can name `file:line`. It never builds RDATA and does no I/O
//! beyond reading `$INCLUDE`d files, which it resolves as the parser does.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::txt::parse_ttl;

/// Deepest `$INCLUDE` nesting followed (the parser's own limit is larger; past this, the
/// entries of deeper files are only not located).
const MAX_INCLUDE_DEPTH: usize = 16;

/// One resource-record entry of a master file.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    /// The file it is in (the `records_file` or a file it includes).
    pub path: PathBuf,
    /// Line the entry starts on, from 1.
    pub line: usize,
    /// Owner, absolute, lowercased.
    pub owner: Name,
    /// The class written on this entry, if one was.
    pub class: Option<DNSClass>,
    /// The record type.
    pub rtype: RecordType,
}

/// A location error: line and what is wrong.
pub(super) type LineError = (PathBuf, usize, String);

/// The entries of the master file `path` (text `text`), names relative to `origin`.
pub(super) fn scan(path: &Path, text: &str, origin: &Name) -> Result<Vec<Entry>, LineError> {
    let mut out = Vec::new();
    let mut state = State {
        origin: origin.clone(),
        owner: None,
    };
    scan_into(path, text, &mut state, 0, &mut out)?;
    Ok(out)
}

/// What carries from one entry to the next.
struct State {
    origin: Name,
    owner: Option<Name>,
}

fn scan_into(
    path: &Path,
    text: &str,
    state: &mut State,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), LineError> {
    let err = |line: usize, message: String| (path.to_path_buf(), line, message);
    for (line, blank_owner, tokens) in logical_entries(text) {
        let mut rest = tokens.iter().map(String::as_str);
        if !blank_owner {
            let Some(first) = rest.next() else { continue };
            match first.to_ascii_uppercase().as_str() {
                "$ORIGIN" => {
                    let name = rest.next().unwrap_or_default();
                    state.origin = Name::parse(name, None)
                        .map_err(|e| err(line, format!("$ORIGIN: {}", super::clip_msg(&e))))?
                        .to_lowercase();
                    continue;
                }
                "$TTL" => continue,
                "$INCLUDE" => {
                    let Some(file) = rest.next() else { continue };
                    if depth >= MAX_INCLUDE_DEPTH {
                        continue;
                    }
                    let include = match Path::new(file) {
                        p if p.is_absolute() => p.to_path_buf(),
                        p => path.parent().unwrap_or(Path::new(".")).join(p),
                    };
                    let text = fs::read_to_string(&include)
                        .map_err(|e| err(line, format!("$INCLUDE {}: {e}", include.display())))?;
                    scan_into(&include, &text, state, depth + 1, out)?;
                    continue;
                }
                "@" => state.owner = Some(state.origin.clone()),
                _ => {
                    let name = Name::parse(first, Some(&state.origin)).map_err(|e| {
                        err(
                            line,
                            format!("`{}`: {}", super::clip(first), super::clip_msg(&e)),
                        )
                    })?;
                    state.owner = Some(name.to_lowercase());
                }
            }
        }
        let mut class = None;
        let mut rtype = None;
        for token in rest {
            if parse_ttl(token).is_ok() {
                continue;
            }
            let upper = token.to_ascii_uppercase();
            if let Ok(c) = DNSClass::from_str(&upper) {
                class = Some(c);
                continue;
            }
            rtype = RecordType::from_str(&upper).ok();
            break;
        }
        // Entries without a type or owner are the parser's to reject; nothing to locate.
        let (Some(rtype), Some(owner)) = (rtype, state.owner.clone()) else {
            continue;
        };
        out.push(Entry {
            path: path.to_path_buf(),
            line,
            owner,
            class,
            rtype,
        });
    }
    Ok(())
}

/// Splits master-file text into entries: (first line, owner left blank, tokens). Comments
/// (`;`) are dropped, parentheses join lines, quoted strings are one token, `\` escapes the
/// next character.
fn logical_entries(text: &str) -> Vec<(usize, bool, Vec<String>)> {
    let mut entries = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut start = 1;
    let mut blank_owner = false;
    let mut depth = 0usize;
    let mut quoted = false;
    let mut line = 1;
    let mut at_line_start = true;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if at_line_start && depth == 0 && !quoted && tokens.is_empty() && current.is_none() {
            start = line;
            blank_owner = c == ' ' || c == '\t';
        }
        at_line_start = false;
        match c {
            '\\' => {
                let word = current.get_or_insert_with(String::new);
                word.push(c);
                if let Some(next) = chars.next() {
                    if next == '\n' {
                        line += 1;
                    }
                    word.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                current.get_or_insert_with(String::new);
            }
            _ if quoted => {
                if c == '\n' {
                    line += 1;
                }
                current.get_or_insert_with(String::new).push(c);
            }
            ';' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                tokens.extend(current.take());
                line += 1;
                at_line_start = true;
                if depth == 0 && !tokens.is_empty() {
                    entries.push((start, blank_owner, std::mem::take(&mut tokens)));
                }
            }
            '(' => {
                tokens.extend(current.take());
                depth += 1;
            }
            ')' => {
                tokens.extend(current.take());
                depth = depth.saturating_sub(1);
            }
            '\n' => {
                tokens.extend(current.take());
                line += 1;
                at_line_start = true;
                if depth == 0 && !tokens.is_empty() {
                    entries.push((start, blank_owner, std::mem::take(&mut tokens)));
                }
            }
            c if c.is_whitespace() => tokens.extend(current.take()),
            c => current.get_or_insert_with(String::new).push(c),
        }
    }
    tokens.extend(current.take());
    if !tokens.is_empty() {
        entries.push((start, blank_owner, tokens));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_start_where_their_first_line_is() {
        let text = "$ORIGIN t.test.\n; only a comment\n@ 3600 IN SOA ns1 h (\n 1 2 ; serial\n 3 4 5 )\n\
                    \tIN NS ns1\nwww 300 CH TXT \"a ; not a comment\" \"(\"\n\nsub.other.test. IN 60 A 192.0.2.1\n";
        let path = Path::new("t.zone");
        let entries = scan(path, text, &Name::from_ascii("t.test.").unwrap()).unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.line, e.owner.to_string(), e.class, e.rtype))
            .collect();
        assert_eq!(
            got,
            [
                (3, "t.test.".into(), Some(DNSClass::IN), RecordType::SOA),
                (6, "t.test.".into(), Some(DNSClass::IN), RecordType::NS),
                (7, "www.t.test.".into(), Some(DNSClass::CH), RecordType::TXT),
                (
                    9,
                    "sub.other.test.".into(),
                    Some(DNSClass::IN),
                    RecordType::A
                ),
            ]
        );
    }

    #[test]
    fn included_files_are_followed_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("t.zone");
        let inc = dir.path().join("more.zone");
        std::fs::write(&inc, "; included\nversion CH TXT \"1\"\n").unwrap();
        let text = "$ORIGIN t.test.\n$INCLUDE more.zone\nwww 60 IN A 192.0.2.1\n";
        let entries = scan(&main, text, &Name::from_ascii("t.test.").unwrap()).unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.path.clone(), e.line, e.owner.to_string(), e.class))
            .collect();
        assert_eq!(
            got,
            [
                (inc, 2, "version.t.test.".into(), Some(DNSClass::CH)),
                (main, 3, "www.t.test.".into(), Some(DNSClass::IN)),
            ]
        );
    }
}
