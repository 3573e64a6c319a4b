//! The crate's top-level modules import each other without a cycle, and the query path's
//! direction holds: `dns -> routing -> proto`, never back (docs/architecture.md). Built from
//! the `crate::X` paths of non-test code (`#[cfg(test)]` items and `*_tests.rs` / `*_prop.rs`
//! files left out), so a new back edge fails here, naming the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> (module it names -> files that name it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without comments and string or char literals (each string becomes `""`), so
/// neither a `crate::` nor a brace inside them counts.
fn strip_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && !ident_before && (at(i + 1) == '"' || at(i + 1) == '#') {
            // A raw string: r"..." or r#"..."#, closed by a quote and as many hashes.
            let mut hashes = 0;
            let mut j = i + 1;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) != '"' {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < chars.len() && !(chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#')) {
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1 + hashes;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A char literal ('x', '\n', '\u{7f}'); a lifetime has no closing quote.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Production code: no comments, no literals, no `#[cfg(test)]` items.
fn production_code(text: &str) -> String {
    let text = strip_literals(text);
    let mut code = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        code.push_str(&rest[..i]);
        rest = skip_item(&rest[i + "#[cfg(test)]".len()..]);
    }
    code.push_str(rest);
    code
}

/// Skips one item: to its `;` or past its `{ ... }` block, whichever comes first.
fn skip_item(text: &str) -> &str {
    let (semi, brace) = (text.find(';'), text.find('{'));
    match (semi, brace) {
        (Some(s), Some(b)) if s < b => &text[s + 1..],
        (Some(s), None) => &text[s + 1..],
        (_, Some(b)) => {
            let mut depth = 0usize;
            for (i, c) in text[b..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return &text[b + i + 1..];
                        }
                    }
                    _ => {}
                }
            }
            ""
        }
        (None, None) => "",
    }
}

/// The top-level modules `code` names as `crate::X` or `crate::{X, Y, ...}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `foocrate::`
        }
        let after = &code[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Top-level names of a group: those at brace depth 0.
            let mut depth = 0usize;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        out.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(after));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.ends_with("_tests.rs") || rel.ends_with("_prop.rs") {
            continue;
        }
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let code = production_code(&std::fs::read_to_string(&file).unwrap());
        let edges = graph.entry(top.clone()).or_default();
        for m in named_modules(&code) {
            if m != top {
                edges.entry(m).or_default().insert(rel.clone());
            }
        }
    }
    graph
}

/// A path `from -> ... -> to` in `graph`, if there is one.
fn path(graph: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![from.to_string()]];
    while let Some(p) = stack.pop() {
        let last = p.last().unwrap();
        for next in graph.get(last).into_iter().flat_map(|e| e.keys()) {
            if next == to {
                let mut p = p.clone();
                p.push(next.clone());
                return Some(p);
            }
            if seen.insert(next.clone()) {
                let mut p = p.clone();
                p.push(next.clone());
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let graph = graph();
    assert!(graph.len() > 10, "the scan found the modules: {graph:?}");
    for (module, edges) in &graph {
        for (dep, files) in edges {
            if let Some(back) = path(&graph, dep, module) {
                panic!(
                    "import cycle: {module} -> {} ({module} -> {dep} is made by {files:?})",
                    back.join(" -> ")
                );
            }
        }
    }
}

#[test]
fn query_path_dependencies_run_one_way() {
    let graph = graph();
    let names = |m: &str| -> BTreeSet<&String> { graph.get(m).unwrap().keys().collect() };
    assert!(names("dns").contains(&"routing".to_string()));
    assert!(
        !graph["routing"].contains_key("dns"),
        "routing must not import dns (it writes into an AnswerSink): {:?}",
        graph["routing"].get("dns")
    );
    assert!(
        names("proto").is_empty(),
        "proto is a leaf: {:?}",
        graph["proto"]
    );
}

#[test]
fn the_scan_sees_what_it_must() {
    let code = production_code(
        "use crate::a::B;\n// crate::comment\n/* crate::block */\nuse crate::{b, c::{D, e}};\n\
         #[cfg(test)]\nmod tests { fn t<'a>() { s(\"{\", '{', r#\"}\"#); } use crate::hidden; }\n\
         #[cfg(test)]\nuse crate::also_hidden;\nfn f<'a>(_: &'a str) -> crate::f::G { \"crate::str\" }\n",
    );
    let found: Vec<String> = named_modules(&code).into_iter().collect();
    assert_eq!(found, ["a", "b", "c", "f"]);
    let mut g = Graph::new();
    g.entry("x".into())
        .or_default()
        .entry("y".into())
        .or_default();
    g.entry("y".into())
        .or_default()
        .entry("x".into())
        .or_default();
    assert_eq!(path(&g, "y", "x").unwrap(), ["y", "x"]);
    assert!(path(&g, "x", "z").is_none());
}
