//! Finding every schema error in a file, each with its key path and line.
//!
//! serde stops at the first error. To report all of them, the file is
//! deserialized, the error's byte span is looked up in a span-preserving
//! parse of the original text ([`toml_edit::Document`]) to find the key path
//! and the lines of the offending key/value (or table), those lines are blanked
//! in a working copy, and the copy is deserialized again, until it succeeds.
//!
//! Blanking replaces every byte of the affected lines except `\n` with a
//! space, so byte offsets and line numbers in the working copy stay those of
//! the original: later error spans still point into the original document.
//! A key/value always has its lines to itself in TOML (outside inline tables
//! and arrays, which are blanked with their enclosing key), so blanking whole
//! lines never damages a neighbour.

use std::ops::Range;

use toml_edit::{Document, Item, Table, Value};

use crate::error::{Diagnostic, KeyPath, Problem, Segment};
use crate::file;

/// Upper bound on deserialize/blank rounds; one error is found per round.
const MAX_ROUNDS: usize = 100;

/// 1-based line number of byte `offset` in `src`.
pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    let bytes = src.as_bytes();
    let end = offset.min(bytes.len());
    1 + bytes[..end].iter().filter(|&&b| b == b'\n').count()
}

/// The outcome of [`parse`].
pub(crate) struct Parsed<'a> {
    /// The span-preserving document, for mapping semantic errors to lines.
    pub(crate) doc: Document<&'a str>,
    /// The deserialized file, once every schema error has been blanked out.
    /// `None` when the loop had to give up.
    pub(crate) config: Option<file::Config>,
    /// Schema errors found on the way.
    pub(crate) diagnostics: Vec<Diagnostic>,
}

/// Parses `src` as TOML and deserializes it into [`file::Config`], collecting
/// every schema error.
///
/// # Errors
///
/// Invalid TOML: the single syntax error, with its line.
pub(crate) fn parse<'a>(src: &'a str, origin: &str) -> Result<Parsed<'a>, Diagnostic> {
    let doc = Document::parse(src).map_err(|e| Diagnostic {
        origin: origin.to_owned(),
        line: e.span().map(|s| line_of(src, s.start)),
        path: KeyPath::root(),
        problem: Problem::Syntax(e.message().trim().to_owned()),
    })?;

    let mut diagnostics = Vec::new();
    let mut work = src.to_owned();
    for _ in 0..MAX_ROUNDS {
        let err = match toml::from_str::<file::Config>(&work) {
            Ok(config) => {
                return Ok(Parsed {
                    doc,
                    config: Some(config),
                    diagnostics,
                })
            }
            Err(err) => err,
        };
        let span = err.span();
        let hit = span.as_ref().and_then(|s| locate(doc.as_table(), s));
        let line = span.as_ref().map(|s| line_of(src, s.start));
        let problem = Problem::Schema(tidy_message(err.message()));
        let Some(hit) = hit else {
            diagnostics.push(Diagnostic {
                origin: origin.to_owned(),
                line,
                path: KeyPath::root(),
                problem,
            });
            return Ok(Parsed {
                doc,
                config: None,
                diagnostics,
            });
        };
        diagnostics.push(Diagnostic {
            origin: origin.to_owned(),
            line,
            path: hit.path,
            problem,
        });
        let next = blank_lines(&work, &hit.regions);
        if next == work {
            // Blanking changed nothing, so the same error would come back.
            return Ok(Parsed {
                doc,
                config: None,
                diagnostics,
            });
        }
        work = next;
    }
    diagnostics.push(Diagnostic {
        origin: origin.to_owned(),
        line: None,
        path: KeyPath::root(),
        problem: Problem::Schema(format!("too many errors; stopped after {MAX_ROUNDS}")),
    });
    Ok(Parsed {
        doc,
        config: None,
        diagnostics,
    })
}

/// serde says ``unknown field `x`, expected ...``; the path already names the
/// field, so drop the repetition: `unknown field, expected ...`.
fn tidy_message(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((_, tail)) = rest.split_once('`') {
            return format!("unknown field{tail}");
        }
    }
    message.to_owned()
}

/// Where an error is: its key path, and the byte ranges whose lines must be
/// blanked to make it go away.
struct Hit {
    path: KeyPath,
    regions: Vec<Range<usize>>,
}

fn contains(outer: Option<&Range<usize>>, inner: &Range<usize>) -> bool {
    outer.is_some_and(|o| o.start <= inner.start && inner.end <= o.end)
}

/// The range from a key to the end of its value.
fn kv_region(key: Option<Range<usize>>, value: Option<Range<usize>>) -> Option<Range<usize>> {
    match (key, value) {
        (Some(k), Some(v)) => Some(k.start.min(v.start)..k.end.max(v.end)),
        (k, v) => k.or(v),
    }
}

/// Finds the item whose key, value or header contains `err`.
fn locate(root: &Table, err: &Range<usize>) -> Option<Hit> {
    let mut path = KeyPath::root();
    in_table(root, &mut path, err)
}

fn in_table(table: &Table, path: &mut KeyPath, err: &Range<usize>) -> Option<Hit> {
    for (name, item) in table.iter() {
        let key_span = table.key(name).and_then(|k| k.span());
        path.push(Segment::Key(name.to_owned()));
        let found = in_item(item, key_span, path, err);
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

fn in_item(
    item: &Item,
    key_span: Option<Range<usize>>,
    path: &mut KeyPath,
    err: &Range<usize>,
) -> Option<Hit> {
    match item {
        Item::None => None,
        Item::Value(value) => {
            let region = kv_region(key_span.clone(), value.span())?;
            if contains(key_span.as_ref(), err) {
                return Some(Hit {
                    path: path.clone(),
                    regions: vec![region],
                });
            }
            let inner = in_value(value, path, err)?;
            Some(Hit {
                path: inner,
                regions: vec![region],
            })
        }
        Item::Table(table) => {
            let header = if table.is_dotted() {
                None
            } else {
                table.span()
            };
            if contains(header.as_ref(), err) || contains(key_span.as_ref(), err) {
                return Some(Hit {
                    path: path.clone(),
                    regions: subtree(table),
                });
            }
            in_table(table, path, err)
        }
        Item::ArrayOfTables(array) => {
            for (i, table) in array.iter().enumerate() {
                path.push(Segment::Index(i));
                let found = if contains(table.span().as_ref(), err) {
                    Some(Hit {
                        path: path.clone(),
                        regions: subtree(table),
                    })
                } else {
                    in_table(table, path, err)
                };
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            if contains(key_span.as_ref(), err) {
                return Some(Hit {
                    path: path.clone(),
                    regions: array.iter().flat_map(subtree).collect(),
                });
            }
            None
        }
    }
}

/// The path of the innermost part of `value` (array element, inline-table
/// entry) containing `err`, or `None` if `err` is not inside `value`.
fn in_value(value: &Value, path: &KeyPath, err: &Range<usize>) -> Option<KeyPath> {
    let span = value.span();
    // Dotted keys inside inline tables (`{ a.b = 1 }`) make span-less tables.
    if span.is_some() && !contains(span.as_ref(), err) {
        return None;
    }
    let deeper = match value {
        Value::Array(array) => array
            .iter()
            .enumerate()
            .find_map(|(i, v)| in_value(v, &path.index(i), err)),
        Value::InlineTable(table) => table.iter().find_map(|(name, v)| {
            let key_span = table.key(name).and_then(|k| k.span());
            let here = path.key(name);
            if contains(key_span.as_ref(), err) {
                Some(here)
            } else {
                in_value(v, &here, err)
            }
        }),
        _ => None,
    };
    match deeper {
        Some(p) => Some(p),
        None if span.is_some() => Some(path.clone()),
        None => None,
    }
}

/// Every range belonging to a table: its header and all its key/values and
/// sub-tables.
fn subtree(table: &Table) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    if !table.is_dotted() {
        out.extend(table.span());
    }
    for (name, item) in table.iter() {
        let key_span = table.key(name).and_then(|k| k.span());
        match item {
            Item::None => {}
            Item::Value(v) => out.extend(kv_region(key_span, v.span())),
            Item::Table(t) => out.extend(subtree(t)),
            Item::ArrayOfTables(a) => out.extend(a.iter().flat_map(subtree)),
        }
    }
    out
}

/// Replaces every byte of the lines touched by `regions` with a space,
/// keeping the newlines, so offsets and line numbers do not move.
fn blank_lines(src: &str, regions: &[Range<usize>]) -> String {
    let bytes = src.as_bytes();
    let len = bytes.len();
    let lines: Vec<Range<usize>> = regions
        .iter()
        .map(|r| {
            let start = r.start.min(len);
            let end = r.end.clamp(start, len);
            let line_start = bytes[..start]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let line_end = bytes[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(len, |i| end + i);
            line_start..line_end
        })
        .collect();
    let mut out = String::with_capacity(len);
    for (i, c) in src.char_indices() {
        if c != '\n' && lines.iter().any(|l| l.contains(&i)) {
            for _ in 0..c.len_utf8() {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A position while walking a [`KeyPath`] through a document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Item(&'a Item),
    Value(&'a Value),
}

/// The byte span that best locates `path` in `root`: the key itself when
/// present, otherwise its closest present ancestor (for a key that is
/// absent, e.g. a required key, that is the table that should contain it).
pub(crate) fn span_of_path(root: &Table, path: &KeyPath) -> Option<Range<usize>> {
    let mut node = Node::Table(root);
    let mut best = None;
    for seg in path.segments() {
        if let Node::Item(Item::Value(v)) = node {
            node = Node::Value(v);
        }
        let table = match node {
            Node::Table(t) | Node::Item(Item::Table(t)) => Some(t),
            _ => None,
        };
        let step: Option<(Node<'_>, Option<Range<usize>>)> = match (node, seg) {
            (_, Segment::Key(k)) if table.is_some() => table
                .and_then(|t| t.get_key_value(k))
                .map(|(key, item)| (Node::Item(item), key.span())),
            (Node::Value(Value::InlineTable(t)), Segment::Key(k)) => t
                .get_key_value(k)
                .map(|(key, item)| (Node::Item(item), key.span())),
            (Node::Item(Item::ArrayOfTables(a)), Segment::Index(i)) => {
                a.get(*i).map(|t| (Node::Table(t), t.span()))
            }
            (Node::Value(Value::Array(a)), Segment::Index(i)) => {
                a.get(*i).map(|v| (Node::Value(v), v.span()))
            }
            _ => None,
        };
        let Some((next, span)) = step else { break };
        node = next;
        if span.is_some() {
            best = span;
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn blanking_keeps_offsets_and_newlines() {
        let src = "a = 1\nb = [\n  \"é\",\n]\nc = 3\n";
        let start = src.find("b =").unwrap_or(0);
        let end = src.find("]\n").unwrap_or(0) + 1;
        let region = start..end;
        let out = blank_lines(src, std::slice::from_ref(&region));
        assert_eq!(out.len(), src.len());
        assert_eq!(out, "a = 1\n     \n       \n \nc = 3\n");
        assert_eq!(line_of(src, src.find("c =").unwrap_or(0)), 5);
    }

    #[test]
    fn tidies_unknown_field() {
        assert_eq!(
            tidy_message("unknown field `zz`, expected one of `x`, `y`"),
            "unknown field, expected one of `x`, `y`"
        );
        assert_eq!(
            tidy_message("invalid type: string \"a\", expected u32"),
            "invalid type: string \"a\", expected u32"
        );
    }

    #[test]
    fn paths_map_to_lines() {
        let src = "[server]\nlisten = [\n  \"a\",\n  \"b\",\n]\n[[magento.run]]\nhost = \"x\"\n[[magento.run]]\ncode = \"y\"\n[upstream]\nurl = \"z\"\n";
        let doc = match Document::parse(src) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let line = |p: KeyPath| span_of_path(doc.as_table(), &p).map(|s| line_of(src, s.start));
        assert_eq!(
            line(KeyPath::from_dotted("server.listen").index(1)),
            Some(4)
        );
        assert_eq!(line(KeyPath::from_dotted("server.listen")), Some(2));
        assert_eq!(line(KeyPath::from_dotted("server.max_headers")), Some(1));
        assert_eq!(
            line(KeyPath::from_dotted("magento.run").index(1).key("code")),
            Some(9)
        );
        assert_eq!(
            line(KeyPath::from_dotted("magento.run").index(1).key("host")),
            Some(8)
        );
        assert_eq!(line(KeyPath::from_dotted("upstream.url")), Some(11));
        assert_eq!(line(KeyPath::from_dotted("log.format")), None);
    }
}
