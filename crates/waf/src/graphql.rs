//! The mutations a GraphQL request asks Magento to run, read the way Magento
//! reads them, for the rate limits on GraphQL's credential and payment
//! mutations (`generateCustomerToken`, `placeOrder` …).
//!
//! Why a parse and not a byte search: PHP's `json_decode` restores
//! `generateCustomer\u0054oken` to `generateCustomerToken`, GraphQL ignores
//! commas, comments and most whitespace, and one request can name a
//! mutation several times under aliases (each one a password attempt). So
//! the body is parsed as JSON (`serde_json`, what `json_decode` accepts),
//! its `query` tokenized as GraphQL, and the top-level fields of every
//! mutation operation counted, aliases included.
//!
//! What this is not: a validating GraphQL parser. It reads enough of the
//! grammar (operations, selection sets, arguments, fragments) to find
//! top-level field names, and when it cannot make sense of a document it
//! errs towards counting: a body it cannot read is reported as
//! [`Mutations::Unreadable`], and the caller charges it to every rule on
//! GraphQL mutations. A request Magento would refuse costs a client one
//! unit of quota; a request Magento would run is never missed.
//!
//! `operationName` is not consulted: every mutation operation in the
//! document is counted, a superset of the one Magento runs, so naming
//! another operation cannot hide one.

use std::collections::HashMap;

/// Most tokens read from one document: beyond that the document counts as
/// unreadable (Magento's own limits refuse far smaller ones).
const MAX_TOKENS: usize = 100_000;

/// Most batched operations read from one JSON array.
const MAX_BATCH: usize = 100;

/// What a GraphQL request would run, as far as rate limits care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutations {
    /// Top-level mutation field name → how many times it is selected
    /// (aliases count apart: each runs).
    Fields(HashMap<String, u32>),
    /// The request could not be read (not JSON, not a GraphQL document we
    /// can tokenize): count it against every GraphQL rule.
    Unreadable,
}

impl Mutations {
    /// How many times `field` runs: `None` when not at all; `Some(1)` for
    /// an unreadable request.
    pub fn count(&self, field: &str) -> Option<u32> {
        match self {
            Mutations::Fields(m) => m.get(field).copied().filter(|&n| n > 0),
            Mutations::Unreadable => Some(1),
        }
    }
}

/// The mutations of a POST to `/graphql`: the body is JSON, an object with
/// a `query` string (or, leniently, an array of such objects: a batch).
pub fn mutations_in_json_body(body: &[u8]) -> Mutations {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Mutations::Unreadable;
    };
    let mut fields = HashMap::new();
    let ops: Vec<&serde_json::Value> = match &value {
        serde_json::Value::Array(items) => items.iter().take(MAX_BATCH).collect(),
        other => vec![other],
    };
    for op in ops {
        match op.get("query") {
            Some(serde_json::Value::String(q)) => {
                if collect(q, &mut fields).is_err() {
                    return Mutations::Unreadable;
                }
            }
            // No query (a persisted-query id, say): nothing Magento runs.
            None | Some(serde_json::Value::Null) => {}
            Some(_) => return Mutations::Unreadable,
        }
    }
    Mutations::Fields(fields)
}

/// The mutations of one GraphQL document (a GET's `query` argument, or the
/// `query` of a JSON body).
pub fn mutations_in_document(doc: &str) -> Mutations {
    let mut fields = HashMap::new();
    match collect(doc, &mut fields) {
        Ok(()) => Mutations::Fields(fields),
        Err(Unreadable) => Mutations::Unreadable,
    }
}

#[derive(Debug)]
struct Unreadable;

/// Adds the document's top-level mutation fields to `out`. When the
/// structure cannot be followed but the tokens can, every name in the
/// document counts once (a superset of what could run).
fn collect(doc: &str, out: &mut HashMap<String, u32>) -> Result<(), Unreadable> {
    let tokens = tokenize(doc)?;
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
    };
    match parser.document() {
        Some(doc) => {
            // Fragments spread at a mutation's top level bring their own
            // top-level fields; resolve them (bounded by the fragment count,
            // so cycles end).
            for op in doc.mutations {
                let mut stack = vec![op];
                let mut visited = 0usize;
                while let Some(sel) = stack.pop() {
                    for f in sel.fields {
                        *out.entry(f.to_owned()).or_default() += 1;
                    }
                    for spread in sel.spreads {
                        visited += 1;
                        if visited > doc.fragments.len() + 1 {
                            break;
                        }
                        if let Some(frag) = doc.fragments.get(spread) {
                            stack.push(frag.clone());
                        }
                    }
                }
            }
            Ok(())
        }
        None => {
            for t in &tokens {
                if let Token::Name(n) = t {
                    out.entry((*n).to_owned()).or_insert(1);
                }
            }
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Name(&'a str),
    /// `{ } ( ) [ ] : = @ $ ! & | ...`
    Punct(&'a str),
    /// Numbers and strings: their content never names a field.
    Value,
}

/// GraphQL's lexical grammar: whitespace, commas, BOM and `#` comments are
/// ignored; names, punctuators, numbers, strings and block strings.
fn tokenize(doc: &str) -> Result<Vec<Token<'_>>, Unreadable> {
    let b = doc.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if out.len() > MAX_TOKENS {
            return Err(Unreadable);
        }
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'{' | b'}' | b'(' | b')' | b'[' | b']' | b':' | b'=' | b'@' | b'$' | b'!' | b'&'
            | b'|' => {
                out.push(Token::Punct(&doc[i..i + 1]));
                i += 1;
            }
            b'.' if b.get(i..i + 3) == Some(b"...") => {
                out.push(Token::Punct("..."));
                i += 3;
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = i;
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                out.push(Token::Name(&doc[start..i]));
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
                out.push(Token::Value);
            }
            b'"' => {
                if b.get(i..i + 3) == Some(b"\"\"\"") {
                    i += 3;
                    loop {
                        match b.get(i..i + 3) {
                            None => return Err(Unreadable),
                            Some(b"\"\"\"") => break,
                            Some([b'\\', b'"', b'"']) if b.get(i + 3) == Some(&b'"') => i += 4,
                            Some(_) => i += 1,
                        }
                    }
                    i += 3;
                } else {
                    i += 1;
                    loop {
                        match b.get(i) {
                            None | Some(b'\n') | Some(b'\r') => return Err(Unreadable),
                            Some(b'\\') => i += 2,
                            Some(b'"') => break,
                            Some(_) => i += 1,
                        }
                    }
                    i += 1;
                }
                out.push(Token::Value);
            }
            // The byte-order mark (U+FEFF, EF BB BF) is ignored.
            0xEF if b.get(i..i + 3) == Some(&[0xEF, 0xBB, 0xBF]) => i += 3,
            _ => return Err(Unreadable),
        }
    }
    Ok(out)
}

/// A selection set's top level: field names (aliases resolved to the field)
/// and the fragments spread there. Inline fragments are flattened in.
#[derive(Debug, Clone, Default)]
struct TopLevel<'a> {
    fields: Vec<&'a str>,
    spreads: Vec<&'a str>,
}

#[derive(Debug, Default)]
struct Document<'a> {
    mutations: Vec<TopLevel<'a>>,
    fragments: HashMap<&'a str, TopLevel<'a>>,
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.peek();
        self.pos += 1;
        t
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.peek() == Some(Token::Punct(p)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn document(&mut self) -> Option<Document<'a>> {
        let mut doc = Document::default();
        while let Some(t) = self.peek() {
            match t {
                Token::Punct("{") => {
                    // Query shorthand.
                    self.selection_set()?;
                }
                Token::Name("fragment") => {
                    self.pos += 1;
                    let Some(Token::Name(name)) = self.next() else {
                        return None;
                    };
                    if self.next() != Some(Token::Name("on")) {
                        return None;
                    }
                    let Some(Token::Name(_)) = self.next() else {
                        return None;
                    };
                    self.directives()?;
                    let top = self.selection_set()?;
                    doc.fragments.insert(name, top);
                }
                Token::Name(kind @ ("query" | "mutation" | "subscription")) => {
                    self.pos += 1;
                    if let Some(Token::Name(_)) = self.peek() {
                        self.pos += 1;
                    }
                    if self.peek() == Some(Token::Punct("(")) {
                        self.balanced("(", ")")?;
                    }
                    self.directives()?;
                    let top = self.selection_set()?;
                    if kind == "mutation" {
                        doc.mutations.push(top);
                    }
                }
                _ => return None,
            }
        }
        Some(doc)
    }

    /// `@name(args)` repeated.
    fn directives(&mut self) -> Option<()> {
        while self.eat("@") {
            let Some(Token::Name(_)) = self.next() else {
                return None;
            };
            if self.peek() == Some(Token::Punct("(")) {
                self.balanced("(", ")")?;
            }
        }
        Some(())
    }

    /// Skips a bracketed group (arguments, variable definitions, nested
    /// selection sets), brackets of every kind balanced.
    fn balanced(&mut self, open: &str, close: &str) -> Option<()> {
        if !self.eat(open) {
            return None;
        }
        let mut stack = vec![close];
        while let Some(t) = self.next() {
            match t {
                Token::Punct("(") => stack.push(")"),
                Token::Punct("[") => stack.push("]"),
                Token::Punct("{") => stack.push("}"),
                Token::Punct(p @ (")" | "]" | "}")) => {
                    if stack.pop() != Some(p) {
                        return None;
                    }
                    if stack.is_empty() {
                        return Some(());
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// `{ selection* }`, returning its top level.
    fn selection_set(&mut self) -> Option<TopLevel<'a>> {
        if !self.eat("{") {
            return None;
        }
        let mut top = TopLevel::default();
        loop {
            match self.next()? {
                Token::Punct("}") => return Some(top),
                Token::Punct("...") => match self.peek() {
                    Some(Token::Name("on")) => {
                        self.pos += 1;
                        let Some(Token::Name(_)) = self.next() else {
                            return None;
                        };
                        self.directives()?;
                        let inner = self.selection_set()?;
                        top.fields.extend(inner.fields);
                        top.spreads.extend(inner.spreads);
                    }
                    Some(Token::Name(name)) => {
                        self.pos += 1;
                        self.directives()?;
                        top.spreads.push(name);
                    }
                    Some(Token::Punct("@")) | Some(Token::Punct("{")) => {
                        self.directives()?;
                        let inner = self.selection_set()?;
                        top.fields.extend(inner.fields);
                        top.spreads.extend(inner.spreads);
                    }
                    _ => return None,
                },
                Token::Name(first) => {
                    // `alias: field` or `field`.
                    let name = if self.eat(":") {
                        let Some(Token::Name(field)) = self.next() else {
                            return None;
                        };
                        field
                    } else {
                        first
                    };
                    top.fields.push(name);
                    if self.peek() == Some(Token::Punct("(")) {
                        self.balanced("(", ")")?;
                    }
                    self.directives()?;
                    if self.peek() == Some(Token::Punct("{")) {
                        self.balanced("{", "}")?;
                    }
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn count(body: &str, field: &str) -> Option<u32> {
        mutations_in_json_body(body.as_bytes()).count(field)
    }

    #[test]
    fn finds_the_mutation_however_it_is_spelled() {
        let f = "generateCustomerToken";
        for body in [
            r#"{"query":"mutation { generateCustomerToken(email: \"a@b.c\", password: \"x\") { token } }"}"#,
            // JSON escapes PHP's json_decode restores.
            r#"{"query":"mutation { generateCustomer\u0054oken(email: \"a@b.c\", password: \"x\") { token } }"}"#,
            r#"{"query":"mutation{\u0067enerateCustomerToken(email:\"a\",password:\"b\"){token}}"}"#,
            // Comments, commas and line breaks inside the document.
            r#"{"query":"mutation Login($e: String!, $p: String!) {\n # hi\n ,,, t: generateCustomerToken # c\n (email: $e, password: $p) { token } }","variables":{"e":"a","p":"b"}}"#,
            // operationName naming another operation.
            r#"{"query":"query A { cart(cart_id: \"x\") { id } } mutation B { generateCustomerToken(email: \"a\", password: \"b\") { token } }","operationName":"A"}"#,
            // Through a fragment or an inline fragment.
            r#"{"query":"mutation { ...F } fragment F on Mutation { generateCustomerToken(email: \"a\", password: \"b\") { token } }"}"#,
            r#"{"query":"mutation { ... on Mutation { generateCustomerToken(email: \"a\", password: \"b\") { token } } }"}"#,
            // Duplicate keys: PHP keeps the last, as serde_json does.
            r#"{"query":"{ products { total_count } }","query":"mutation { generateCustomerToken(email: \"a\", password: \"b\") { token } }"}"#,
            // A batch.
            r#"[{"query":"{ x }"},{"query":"mutation { generateCustomerToken(email: \"a\", password: \"b\") { token } }"}]"#,
        ] {
            assert_eq!(count(body, f), Some(1), "{body}");
        }
    }

    #[test]
    fn aliases_count_every_attempt() {
        let body = r#"{"query":"mutation { a: generateCustomerToken(email: \"a\", password: \"1\") { token } b: generateCustomerToken(email: \"a\", password: \"2\") { token } c: generateCustomerToken(email: \"a\", password: \"3\") { token } }"}"#;
        assert_eq!(count(body, "generateCustomerToken"), Some(3));
    }

    #[test]
    fn queries_and_nested_fields_are_not_mutations() {
        for body in [
            r#"{"query":"{ products(search: \"generateCustomerToken\") { total_count } }"}"#,
            r#"{"query":"query { customer { generateCustomerToken } }"}"#,
            r#"{"query":"mutation { addProductsToCart(cartId: \"x\", cartItems: []) { cart { generateCustomerToken: id } } }"}"#,
            r#"{"query":"mutation { setGuestEmailOnCart(input: {email: \"generateCustomerToken@x\"}) { cart { id } } }"}"#,
        ] {
            assert_eq!(count(body, "generateCustomerToken"), None, "{body}");
        }
    }

    #[test]
    fn unreadable_requests_count() {
        for body in [
            "not json",
            r#"{"query": 5}"#,
            r#"{"query":"mutation { \"unterminated }"}"#,
        ] {
            assert_eq!(count(body, "placeOrder"), Some(1), "{body}");
        }
        // Readable tokens but no structure we follow: every name counts.
        let body =
            r#"{"query":"mutation { placeOrder(input: {cart_id: \"x\"}) { order { number } }"}"#;
        assert_eq!(count(body, "placeOrder"), Some(1));
    }
}
