//! A leading-keyword statement classifier: what a statement is (read,
//! write, transaction control, session `SET`, …) and which session-state
//! effects it may have (lock functions, user variables, temporary tables),
//! decided *before* it runs so the proxy can route it.
//!
//! It is a tokenizer, not a parser: it skips comments (running the body of
//! MySQL's executable `/*! … */` comments), string literals and quoted
//! identifiers, so `SELECT 'GET_LOCK('` is not a lock call and
//! ``SELECT `@x` `` is not a user variable. The server's own answers
//! (status flags, session tracking) are the safety net for what it misses;
//! see [`crate::session`].

use std::ops::Range;

/// What a statement is, by its leading keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// `SELECT`, `WITH … SELECT`, `(SELECT …)`.
    Select,
    /// `SHOW`, `DESCRIBE`, `EXPLAIN`, `HELP`.
    Show,
    /// `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `LOAD`, `CALL`, …
    Write,
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`.
    Commit,
    /// `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`).
    Rollback,
    /// `SET …` (session variables, `NAMES`, user variables, `TRANSACTION`).
    Set,
    /// `USE schema`.
    Use,
    /// `LOCK TABLES`, `FLUSH TABLES WITH READ LOCK`.
    LockTables,
    /// `UNLOCK TABLES`.
    UnlockTables,
    /// `CREATE TEMPORARY TABLE`.
    CreateTemporary,
    /// `DROP TEMPORARY TABLE`.
    DropTemporary,
    /// Other DDL (`CREATE`, `ALTER`, `DROP`, `RENAME`, `TRUNCATE`): commits
    /// implicitly.
    Ddl,
    /// Text-protocol `PREPARE`, `EXECUTE`, `DEALLOCATE PREPARE`.
    PrepareText,
    /// Anything else (`SAVEPOINT`, `XA`, `HANDLER`, `DO`, `KILL`, …).
    Other,
    /// No statement (only whitespace and comments).
    Empty,
}

impl Kind {
    /// A label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Show => "show",
            Self::Write => "write",
            Self::Begin => "begin",
            Self::Commit => "commit",
            Self::Rollback => "rollback",
            Self::Set => "set",
            Self::Use => "use",
            Self::LockTables => "lock_tables",
            Self::UnlockTables => "unlock_tables",
            Self::CreateTemporary => "create_temporary",
            Self::DropTemporary => "drop_temporary",
            Self::Ddl => "ddl",
            Self::PrepareText => "prepare_text",
            Self::Other => "other",
            Self::Empty => "empty",
        }
    }
}

/// A session variable assignment the proxy can replay on another backend:
/// `SET [SESSION] name = literal` or `SET NAMES charset [COLLATE c]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Lower-cased variable name (`names` for `SET NAMES`/`CHARACTER SET`).
    pub name: String,
    /// The value's SQL text as the client wrote it (a literal, identifier or
    /// `DEFAULT`), replayed verbatim.
    pub value: String,
}

/// Session variables whose `SET` is replayed rather than pinned: Magento's
/// connect prologue, and what `startSetup()` and common clients set.
pub const REPLAYABLE_VARIABLES: &[&str] = &[
    "names",
    "sql_mode",
    "time_zone",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "foreign_key_checks",
    "unique_checks",
    "group_concat_max_len",
    "innodb_lock_wait_timeout",
    "transaction_isolation",
    "tx_isolation",
    "sql_auto_is_null",
    "lc_time_names",
    "div_precision_increment",
    "wait_timeout",
    "net_read_timeout",
    "net_write_timeout",
    "max_statement_time",
    "max_execution_time",
    "sql_select_limit",
    "auto_increment_increment",
    "auto_increment_offset",
];

/// The classifier's verdict on one `COM_QUERY` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Leading-keyword kind.
    pub kind: Kind,
    /// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`.
    pub locking_read: bool,
    /// Number of `GET_LOCK(` calls.
    pub get_lock: u32,
    /// Number of `RELEASE_LOCK(` calls.
    pub release_lock: u32,
    /// `RELEASE_ALL_LOCKS(` is called.
    pub release_all_locks: bool,
    /// `IS_USED_LOCK(`/`IS_FREE_LOCK(`: must see the writer's locks.
    pub lock_query: bool,
    /// A user variable is assigned (`SET @x`, `:=`, `INTO @x`).
    pub user_var_write: bool,
    /// `SQL_CALC_FOUND_ROWS`.
    pub calc_found_rows: bool,
    /// `FOUND_ROWS()` or `LAST_INSERT_ID()` is read: needs the backend that
    /// ran the previous statement.
    pub reads_previous_result: bool,
    /// Sequence functions (`NEXTVAL`, `SETVAL`, `NEXT VALUE FOR`): a
    /// `SELECT` that writes.
    pub sequence_write: bool,
    /// `SELECT … INTO OUTFILE/DUMPFILE`.
    pub into_file: bool,
    /// More than one statement in the text (`a; b`).
    pub multi: bool,
    /// For [`Kind::Set`]: the replayable assignments. When the `SET` holds
    /// anything else (a `GLOBAL`, an expression, a variable outside
    /// [`REPLAYABLE_VARIABLES`], `SET TRANSACTION`), `set_other` is true.
    pub assignments: Vec<Assignment>,
    /// A `SET` part that cannot be replayed: the session must pin.
    pub set_other: bool,
    /// For [`Kind::Use`]: the schema.
    pub schema: Option<String>,
    /// The statement is exactly `SELECT GET_LOCK(…)`, `SELECT
    /// RELEASE_LOCK(…)` (optionally with a trailing `;`): its first column is
    /// the function's result, so the session can count locks exactly.
    pub lock_result_first: bool,
}

impl Statement {
    /// True when the statement only reads and may run on a replica: a plain
    /// `SELECT`/`SHOW` with no locking clause, lock function, user-variable
    /// write, sequence function or file output.
    pub fn is_read_only(&self) -> bool {
        matches!(self.kind, Kind::Select | Kind::Show)
            && !self.locking_read
            && self.get_lock == 0
            && self.release_lock == 0
            && !self.release_all_locks
            && !self.lock_query
            && !self.user_var_write
            && !self.calc_found_rows
            && !self.reads_previous_result
            && !self.sequence_write
            && !self.into_file
            && !self.multi
    }

    /// True when the statement touches lock functions (always the writer).
    pub fn uses_lock_functions(&self) -> bool {
        self.get_lock > 0 || self.release_lock > 0 || self.release_all_locks || self.lock_query
    }
}

// === Tokenizer ===

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Range<usize>),
    /// A quoted string (range includes quotes).
    Str(Range<usize>),
    /// A backtick identifier (range includes backticks).
    Ident(Range<usize>),
    UserVar,
    /// `@@…` (range of the name after `@@`, with `session.` etc.).
    SysVar(Range<usize>),
    Punct(u8),
    /// `:=`
    Assign,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn tokenize(sql: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = sql.len();
    let mut in_exec_comment = false;
    while i < n {
        let b = sql[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                // `/*! … */` and `/*M! … */` run their body: skip the marker and version.
                let mut j = i + 2;
                if sql.get(j) == Some(&b'M') && sql.get(j + 1) == Some(&b'!') {
                    j += 1;
                }
                if sql.get(j) == Some(&b'!') {
                    j += 1;
                    while j < n && sql[j].is_ascii_digit() {
                        j += 1;
                    }
                    in_exec_comment = true;
                    i = j;
                } else {
                    match sql[i + 2..].windows(2).position(|w| w == b"*/") {
                        Some(p) => i = i + 2 + p + 2,
                        None => i = n,
                    }
                }
            }
            b'*' if in_exec_comment && sql.get(i + 1) == Some(&b'/') => {
                in_exec_comment = false;
                i += 2;
            }
            b'#' => i = skip_line(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = skip_line(sql, i)
            }
            b'\'' | b'"' | b'`' => {
                let start = i;
                i += 1;
                while i < n {
                    if sql[i] == b'\\' && b != b'`' {
                        i += 2;
                    } else if sql[i] == b {
                        if sql.get(i + 1) == Some(&b) {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                let end = i.min(n);
                out.push(if b == b'`' {
                    Tok::Ident(start..end)
                } else {
                    Tok::Str(start..end)
                });
            }
            b'@' => {
                if sql.get(i + 1) == Some(&b'@') {
                    let start = i + 2;
                    let mut j = start;
                    while j < n && (is_word_byte(sql[j]) || sql[j] == b'.') {
                        j += 1;
                    }
                    out.push(Tok::SysVar(start..j));
                    i = j;
                } else {
                    let mut j = i + 1;
                    if j < n && matches!(sql[j], b'\'' | b'"' | b'`') {
                        let q = sql[j];
                        j += 1;
                        while j < n && sql[j] != q {
                            j += 1;
                        }
                        j += 1;
                    } else {
                        while j < n && (is_word_byte(sql[j]) || sql[j] == b'.') {
                            j += 1;
                        }
                    }
                    out.push(Tok::UserVar);
                    i = j.min(n);
                }
            }
            b':' if sql.get(i + 1) == Some(&b'=') => {
                out.push(Tok::Assign);
                i += 2;
            }
            _ if is_word_byte(b) => {
                let start = i;
                while i < n && is_word_byte(sql[i]) {
                    i += 1;
                }
                out.push(Tok::Word(start..i));
            }
            _ => {
                out.push(Tok::Punct(b));
                i += 1;
            }
        }
    }
    out
}

fn skip_line(sql: &[u8], i: usize) -> usize {
    match sql[i..].iter().position(|&c| c == b'\n') {
        Some(p) => i + p + 1,
        None => sql.len(),
    }
}

// === Classifier ===

struct Toks<'a> {
    sql: &'a [u8],
    toks: Vec<Tok>,
}

impl Toks<'_> {
    fn word(&self, i: usize) -> Option<&[u8]> {
        match self.toks.get(i) {
            Some(Tok::Word(r)) => Some(&self.sql[r.clone()]),
            _ => None,
        }
    }
    fn is(&self, i: usize, kw: &str) -> bool {
        self.word(i)
            .is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
    }
    fn text(&self, i: usize) -> String {
        let r = match &self.toks[i] {
            Tok::Word(r) | Tok::Str(r) | Tok::Ident(r) | Tok::SysVar(r) => r.clone(),
            _ => return String::new(),
        };
        String::from_utf8_lossy(&self.sql[r]).into_owned()
    }
}

/// Classifies one `COM_QUERY` text.
pub fn classify(sql: &[u8]) -> Statement {
    let t = Toks {
        sql,
        toks: tokenize(sql),
    };
    let mut s = Statement {
        kind: Kind::Empty,
        locking_read: false,
        get_lock: 0,
        release_lock: 0,
        release_all_locks: false,
        lock_query: false,
        user_var_write: false,
        calc_found_rows: false,
        reads_previous_result: false,
        sequence_write: false,
        into_file: false,
        multi: false,
        assignments: Vec::new(),
        set_other: false,
        schema: None,
        lock_result_first: false,
    };
    // Statement boundaries: a `;` followed by anything but more `;`.
    let mut end = t.toks.len();
    if let Some(p) = t.toks.iter().position(|x| *x == Tok::Punct(b';')) {
        if t.toks[p..].iter().any(|x| *x != Tok::Punct(b';')) {
            s.multi = true;
        } else {
            end = p;
        }
    }
    let mut first = 0;
    while matches!(t.toks.get(first), Some(Tok::Punct(b'('))) {
        first += 1;
    }
    s.kind = leading_kind(&t, first, end);
    if s.kind == Kind::Use {
        if let Some(i) =
            (first + 1..end).find(|&i| matches!(t.toks[i], Tok::Word(_) | Tok::Ident(_)))
        {
            s.schema = Some(t.text(i).trim_matches('`').replace("``", "`"));
        }
    }
    if s.kind == Kind::Set {
        classify_set(&t, first + 1, end, &mut s);
    }
    if s.kind == Kind::Select
        && first == 0
        && (t.is(1, "GET_LOCK") || t.is(1, "RELEASE_LOCK"))
        && matches!(t.toks.get(2), Some(Tok::Punct(b'(')))
    {
        // The call must close right before the end: `SELECT GET_LOCK(a, b)`.
        let mut depth = 0i32;
        let mut close = None;
        for (j, tok) in t.toks.iter().enumerate().take(end).skip(2) {
            match tok {
                Tok::Punct(b'(') => depth += 1,
                Tok::Punct(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        s.lock_result_first = close == Some(end - 1) && !s.multi;
    }
    let mut into = false;
    for i in 0..t.toks.len() {
        let next_paren = matches!(t.toks.get(i + 1), Some(Tok::Punct(b'(')));
        match &t.toks[i] {
            Tok::Word(r) => {
                let w = &sql[r.clone()];
                let eq = |k: &str| w.eq_ignore_ascii_case(k.as_bytes());
                if next_paren && eq("GET_LOCK") {
                    s.get_lock += 1;
                } else if next_paren && eq("RELEASE_LOCK") {
                    s.release_lock += 1;
                } else if next_paren && eq("RELEASE_ALL_LOCKS") {
                    s.release_all_locks = true;
                } else if next_paren && (eq("IS_USED_LOCK") || eq("IS_FREE_LOCK")) {
                    s.lock_query = true;
                } else if next_paren
                    && (eq("FOUND_ROWS") || eq("LAST_INSERT_ID") || eq("ROW_COUNT"))
                {
                    s.reads_previous_result = true;
                } else if (next_paren && (eq("NEXTVAL") || eq("SETVAL") || eq("LASTVAL")))
                    || (eq("NEXT") && t.is(i + 1, "VALUE") && t.is(i + 2, "FOR"))
                {
                    s.sequence_write = true;
                } else if eq("SQL_CALC_FOUND_ROWS") {
                    s.calc_found_rows = true;
                } else if (eq("FOR") && (t.is(i + 1, "UPDATE") || t.is(i + 1, "SHARE")))
                    || (eq("LOCK") && t.is(i + 1, "IN") && t.is(i + 2, "SHARE"))
                {
                    s.locking_read = true;
                } else if eq("INTO") {
                    into = true;
                    if t.is(i + 1, "OUTFILE") || t.is(i + 1, "DUMPFILE") {
                        s.into_file = true;
                    }
                    continue;
                }
            }
            Tok::UserVar => {
                let assigned = matches!(t.toks.get(i + 1), Some(Tok::Assign))
                    || into
                    || (s.kind == Kind::Set && matches!(t.toks.get(i + 1), Some(Tok::Punct(b'='))));
                if assigned {
                    s.user_var_write = true;
                }
                // `INTO @a, @b`: stay in the INTO list across commas.
                if into && matches!(t.toks.get(i + 1), Some(Tok::Punct(b','))) {
                    continue;
                }
            }
            Tok::Punct(b',') if into => continue,
            _ => {}
        }
        into = false;
    }
    s
}

fn leading_kind(t: &Toks<'_>, i: usize, end: usize) -> Kind {
    let Some(w) = t.word(i) else {
        return if i >= end { Kind::Empty } else { Kind::Other };
    };
    let w = w.to_ascii_uppercase();
    match w.as_slice() {
        b"SELECT" | b"VALUES" | b"TABLE" => Kind::Select,
        b"WITH" => {
            // `WITH … UPDATE/DELETE/INSERT` writes.
            if (i..end).any(|j| t.is(j, "UPDATE") || t.is(j, "DELETE") || t.is(j, "INSERT")) {
                Kind::Write
            } else {
                Kind::Select
            }
        }
        b"SHOW" | b"DESCRIBE" | b"DESC" | b"EXPLAIN" | b"HELP" => Kind::Show,
        b"INSERT" | b"UPDATE" | b"DELETE" | b"REPLACE" | b"LOAD" | b"CALL" => Kind::Write,
        b"BEGIN" if !t.is(i + 1, "NOT") => Kind::Begin,
        b"START" if t.is(i + 1, "TRANSACTION") => Kind::Begin,
        b"COMMIT" => Kind::Commit,
        b"ROLLBACK" if !(i + 1..end).any(|j| t.is(j, "TO")) => Kind::Rollback,
        b"SET" => Kind::Set,
        b"USE" => Kind::Use,
        b"LOCK" if t.is(i + 1, "TABLES") || t.is(i + 1, "TABLE") => Kind::LockTables,
        b"FLUSH" if (i..end).any(|j| t.is(j, "LOCK")) => Kind::LockTables,
        b"UNLOCK" => Kind::UnlockTables,
        b"CREATE" => {
            let mut j = i + 1;
            if t.is(j, "OR") && t.is(j + 1, "REPLACE") {
                j += 2;
            }
            if t.is(j, "TEMPORARY") {
                Kind::CreateTemporary
            } else {
                Kind::Ddl
            }
        }
        b"DROP" if t.is(i + 1, "TEMPORARY") => Kind::DropTemporary,
        b"DROP" if t.is(i + 1, "PREPARE") => Kind::PrepareText,
        b"DROP" | b"ALTER" | b"RENAME" | b"TRUNCATE" => Kind::Ddl,
        b"PREPARE" | b"EXECUTE" | b"DEALLOCATE" => Kind::PrepareText,
        _ => Kind::Other,
    }
}

/// `SET a = x, SESSION b = y, @@session.c = z, NAMES utf8 COLLATE …`.
fn classify_set(t: &Toks<'_>, start: usize, end: usize, s: &mut Statement) {
    // Split at top-level commas.
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0i32, start);
    for i in start..end {
        match t.toks[i] {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth -= 1,
            Tok::Punct(b',') if depth == 0 => {
                parts.push(from..i);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(from..end);
    for p in parts {
        // `SET @x = …` is a user-variable write (seen by the main loop), not
        // a session variable.
        if t.toks.get(p.start) == Some(&Tok::UserVar) {
            continue;
        }
        match set_part(t, p) {
            Some(a) => s.assignments.push(a),
            None => s.set_other = true,
        }
    }
}

fn set_part(t: &Toks<'_>, p: Range<usize>) -> Option<Assignment> {
    let mut i = p.start;
    if i >= p.end {
        return None;
    }
    if t.is(i, "NAMES") || (t.is(i, "CHARACTER") && t.is(i + 1, "SET")) || t.is(i, "CHARSET") {
        i += if t.is(i, "CHARACTER") { 2 } else { 1 };
        let value = (i..p.end).map(|j| t.text(j)).collect::<Vec<_>>().join(" ");
        let simple =
            (i..p.end).all(|j| matches!(t.toks[j], Tok::Word(_) | Tok::Str(_) | Tok::Ident(_)));
        return (simple && !value.is_empty()).then(|| Assignment {
            name: "names".into(),
            value,
        });
    }
    let name = match &t.toks[i] {
        Tok::SysVar(_) => {
            let raw = t.text(i).to_ascii_lowercase();
            match raw.split_once('.') {
                Some(("session" | "local", n)) => n.to_owned(),
                Some(_) => return None,
                None => raw,
            }
        }
        Tok::Word(_) => {
            if t.is(i, "SESSION") || t.is(i, "LOCAL") {
                i += 1;
            }
            if t.is(i, "GLOBAL") || t.is(i, "PERSIST") || t.is(i, "TRANSACTION") {
                return None;
            }
            if !matches!(t.toks.get(i), Some(Tok::Word(_))) {
                return None;
            }
            t.text(i).to_ascii_lowercase()
        }
        _ => return None,
    };
    i += 1;
    if !matches!(t.toks.get(i), Some(Tok::Punct(b'=')) | Some(Tok::Assign)) || i + 2 != p.end {
        return None;
    }
    let value = t.text(i + 1);
    let literal = matches!(&t.toks[i + 1], Tok::Str(_) | Tok::Word(_));
    (literal && !value.is_empty() && REPLAYABLE_VARIABLES.contains(&name.as_str()))
        .then_some(Assignment { name, value })
}

// === Tables and fingerprints ===

/// Table names a statement must not read from a replica
/// (`dbproxy.writer_only_tables`): exact names and prefixes (`quote_*`),
/// lower-case.
#[derive(Debug, Clone, Default)]
pub struct TableMatcher {
    exact: std::collections::HashSet<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
}

impl TableMatcher {
    /// From patterns: a name, or a prefix ending in `*`. Matching ignores
    /// ASCII case, as table names in MySQL do on case-insensitive setups
    /// (and Magento's are lower-case).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut m = Self::default();
        for p in patterns {
            let p = p.as_ref().to_ascii_lowercase();
            match p.strip_suffix('*') {
                Some(prefix) => m.prefixes.push(prefix.as_bytes().to_vec()),
                None => {
                    m.exact.insert(p.into_bytes());
                }
            }
        }
        m
    }

    /// True when no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    fn matches_name(&self, name: &[u8]) -> bool {
        let lower = name.to_ascii_lowercase();
        self.exact.contains(&lower) || self.prefixes.iter().any(|p| lower.starts_with(p))
    }

    /// True when an identifier of `sql` (bare or back-quoted, alone or
    /// after `schema.`) is one of the tables. Any identifier counts, not
    /// only those after `FROM`/`JOIN`: a column that happens to share a
    /// table's name sends a read to the writer, which is only slower, while
    /// a missed table would be a stale read.
    pub fn matches_sql(&self, sql: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        tokenize(sql).iter().any(|t| match t {
            Tok::Word(r) => self.matches_name(&sql[r.clone()]),
            Tok::Ident(r) if r.len() >= 2 => {
                let inner = &sql[r.start + 1..r.end - 1];
                self.matches_name(inner)
            }
            _ => false,
        })
    }
}

/// Longest fingerprint kept, in bytes: longer texts are cut (`…`), so a
/// digest entry's size is bounded whatever a client sends.
pub const MAX_FINGERPRINT: usize = 512;

/// The statement's fingerprint: literals (strings, numbers) replaced by
/// `?`, lists of them by `?+`, comments dropped, whitespace collapsed,
/// keywords upper-cased; `SELECT * FROM t WHERE id IN (1, 2, 3)` and
/// `select * from t where id in (4)` both read
/// `SELECT * FROM t WHERE id IN (?+)`. What `/digests` groups by.
pub fn fingerprint(sql: &[u8]) -> String {
    let toks = tokenize(sql);
    let mut out = String::with_capacity(sql.len().min(MAX_FINGERPRINT) + 4);
    let mut i = 0;
    while i < toks.len() {
        if out.len() >= MAX_FINGERPRINT {
            out.push('…');
            break;
        }
        let t = &toks[i];
        let is_literal = |t: &Tok| match t {
            Tok::Str(_) => true,
            Tok::Word(r) => sql[r.start].is_ascii_digit(),
            _ => false,
        };
        let piece: std::borrow::Cow<'_, str> = if is_literal(t) {
            // A run `?, ?, ?` (a list) folds into one `?+`.
            let mut j = i;
            let mut n = 0;
            while j < toks.len() && is_literal(&toks[j]) {
                n += 1;
                if matches!(toks.get(j + 1), Some(Tok::Punct(b',')))
                    && toks.get(j + 2).is_some_and(is_literal)
                {
                    j += 2;
                } else {
                    break;
                }
            }
            i = j;
            if n > 1 {
                "?+".into()
            } else {
                "?".into()
            }
        } else {
            match t {
                Tok::Word(r) => {
                    let w = &sql[r.clone()];
                    if KEYWORDS
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
                    {
                        String::from_utf8_lossy(w).to_ascii_uppercase().into()
                    } else {
                        String::from_utf8_lossy(w).into_owned().into()
                    }
                }
                Tok::Ident(r) => String::from_utf8_lossy(&sql[r.clone()]).into_owned().into(),
                Tok::Str(_) => "?".into(),
                Tok::UserVar => "@var".into(),
                Tok::SysVar(r) => format!("@@{}", String::from_utf8_lossy(&sql[r.clone()])).into(),
                Tok::Punct(b) => char::from(*b).to_string().into(),
                Tok::Assign => ":=".into(),
            }
        };
        // A function's `(` sticks to its name: `GET_LOCK(`, `COUNT(`.
        let call = *t == Tok::Punct(b'(')
            && i > 0
            && matches!(&toks[i - 1], Tok::Word(r) if !sql[r.start].is_ascii_digit()
                && !matches!(sql[r.clone()].to_ascii_uppercase().as_slice(), b"IN" | b"VALUES" | b"VALUE" | b"AND" | b"OR" | b"ON" | b"FROM" | b"JOIN" | b"WHERE" | b"AS" | b"EXISTS" | b"SELECT" | b"INTO" | b"TABLE" | b"NOT"));
        let glue = call
            || matches!(t, Tok::Punct(b',' | b')' | b'.' | b';'))
            || out.ends_with('(')
            || out.ends_with('.')
            || out.is_empty();
        if !glue {
            out.push(' ');
        }
        out.push_str(&piece);
        i += 1;
    }
    out.truncate(out.trim_end_matches(';').len());
    if out.len() > MAX_FINGERPRINT + '…'.len_utf8() {
        let mut cut = MAX_FINGERPRINT;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Keywords upper-cased in fingerprints (so `select` and `SELECT` group).
const KEYWORDS: &[&str] = &[
    "select",
    "from",
    "where",
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "as",
    "on",
    "join",
    "left",
    "right",
    "inner",
    "outer",
    "cross",
    "straight_join",
    "group",
    "by",
    "order",
    "having",
    "limit",
    "offset",
    "insert",
    "into",
    "values",
    "value",
    "update",
    "set",
    "delete",
    "replace",
    "ignore",
    "duplicate",
    "key",
    "union",
    "all",
    "distinct",
    "asc",
    "desc",
    "like",
    "between",
    "exists",
    "case",
    "when",
    "then",
    "else",
    "end",
    "for",
    "share",
    "lock",
    "mode",
    "start",
    "transaction",
    "begin",
    "commit",
    "rollback",
    "show",
    "create",
    "drop",
    "alter",
    "table",
    "temporary",
    "if",
    "use",
    "with",
    "count",
    "sum",
    "min",
    "max",
    "get_lock",
    "release_lock",
    "is_used_lock",
    "names",
    "session",
    "global",
    "default",
    "true",
    "false",
    "rename",
    "truncate",
    "index",
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(sql: &str) -> Statement {
        classify(sql.as_bytes())
    }

    #[test]
    fn magento_connect_prologue_is_replayable() {
        let s = c("SET SQL_MODE=''");
        assert_eq!(s.kind, Kind::Set);
        assert_eq!(
            s.assignments,
            vec![Assignment {
                name: "sql_mode".into(),
                value: "''".into()
            }]
        );
        assert!(!s.set_other);
        let s = c("SET time_zone = '+00:00'");
        assert_eq!(s.assignments[0].name, "time_zone");
        assert_eq!(s.assignments[0].value, "'+00:00'");
        let s = c("SET NAMES utf8;");
        assert_eq!(
            s.assignments,
            vec![Assignment {
                name: "names".into(),
                value: "utf8".into()
            }]
        );
        assert!(!s.multi);
        let s = c("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'");
        assert_eq!(
            s.assignments[0].value,
            "'utf8mb4' COLLATE 'utf8mb4_unicode_ci'"
        );
        let s = c("SET @@session.sql_mode = 'STRICT_ALL_TABLES', SESSION foreign_key_checks = 0");
        assert_eq!(s.assignments.len(), 2);
        assert!(!s.set_other);
    }

    #[test]
    fn sets_that_cannot_be_replayed() {
        assert!(c("SET GLOBAL sql_mode=''").set_other);
        assert!(c("SET SQL_MODE=@OLD_INSERT_SQL_MODE").set_other);
        assert!(c("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").set_other);
        assert!(c("SET autocommit = 0").set_other);
        let s = c("SET @OLD_INSERT_SQL_MODE=@@SQL_MODE");
        assert!(s.user_var_write);
        assert!(!s.set_other);
    }

    #[test]
    fn lock_functions_in_magentos_spelling() {
        let s = c("SELECT GET_LOCK('magento|CRON_JOB', 60);");
        assert_eq!((s.kind, s.get_lock), (Kind::Select, 1));
        assert!(s.lock_result_first);
        assert!(!s.is_read_only());
        assert!(!c("SELECT GET_LOCK('a', 1), GET_LOCK('b', 1)").lock_result_first);
        assert!(!c("SELECT 1, GET_LOCK('a', 1)").lock_result_first);
        assert_eq!(c("SELECT RELEASE_LOCK('x');").release_lock, 1);
        assert!(c("SELECT IS_USED_LOCK('x')").lock_query);
        assert!(c("select release_all_locks()").release_all_locks);
        assert_eq!(c("SELECT 'GET_LOCK(' AS x").get_lock, 0);
        assert_eq!(c("SELECT /* GET_LOCK( */ 1").get_lock, 0);
        assert_eq!(c("SELECT `GET_LOCK`(1)").get_lock, 0);
        assert_eq!(c("SELECT /*!50000 GET_LOCK('a', 1) */").get_lock, 1);
    }

    #[test]
    fn reads_and_locking_reads() {
        assert!(c("SELECT * FROM catalog_product_entity WHERE entity_id = 1").is_read_only());
        assert!(c("  (SELECT 1) UNION (SELECT 2)").is_read_only());
        assert!(c("SHOW TABLES").is_read_only());
        assert!(
            !c("SELECT qty FROM cataloginventory_stock_item WHERE product_id=1 FOR UPDATE")
                .is_read_only()
        );
        assert!(c("SELECT 1 FROM t LOCK IN SHARE MODE").locking_read);
        assert!(c("SELECT 1 FROM t FOR SHARE").locking_read);
        assert!(!c("SELECT NEXTVAL(s)").is_read_only());
        assert!(!c("SELECT LAST_INSERT_ID()").is_read_only());
        assert!(!c("SELECT SQL_CALC_FOUND_ROWS * FROM t").is_read_only());
        assert!(!c("SELECT 1; DELETE FROM t").is_read_only());
        assert_eq!(c("WITH x AS (SELECT 1) DELETE FROM t").kind, Kind::Write);
        assert_eq!(c("-- comment\nINSERT INTO t VALUES (1)").kind, Kind::Write);
        assert_eq!(c("# comment\nUPDATE t SET a=1").kind, Kind::Write);
    }

    #[test]
    fn user_variables() {
        assert!(c("SELECT @a := 1").user_var_write);
        assert!(c("SELECT a INTO @x FROM t").user_var_write);
        assert!(c("SELECT a, b INTO @x, @y FROM t").user_var_write);
        assert!(!c("SELECT @@version").user_var_write);
        assert!(!c("SELECT @x").user_var_write);
        assert!(!c("SELECT '@x := 1'").user_var_write);
        assert!(!c("SELECT a FROM t WHERE b = @x").user_var_write);
    }

    #[test]
    fn transactions_ddl_and_temporary_tables() {
        assert_eq!(c("START TRANSACTION").kind, Kind::Begin);
        assert_eq!(c("begin").kind, Kind::Begin);
        assert_eq!(c("COMMIT").kind, Kind::Commit);
        assert_eq!(c("ROLLBACK").kind, Kind::Rollback);
        assert_eq!(c("ROLLBACK TO SAVEPOINT a").kind, Kind::Other);
        assert_eq!(
            c("CREATE TEMPORARY TABLE t_temp LIKE t_tmp").kind,
            Kind::CreateTemporary
        );
        assert_eq!(
            c("CREATE OR REPLACE TEMPORARY TABLE x (a int)").kind,
            Kind::CreateTemporary
        );
        assert_eq!(
            c("DROP TEMPORARY TABLE IF EXISTS x").kind,
            Kind::DropTemporary
        );
        assert_eq!(c("RENAME TABLE a TO b, c TO a, b TO c").kind, Kind::Ddl);
        assert_eq!(c("LOCK TABLES t WRITE").kind, Kind::LockTables);
        assert_eq!(c("UNLOCK TABLES").kind, Kind::UnlockTables);
        assert_eq!(c("PREPARE s FROM 'SELECT 1'").kind, Kind::PrepareText);
        let u = c("USE `magento`");
        assert_eq!((u.kind, u.schema.as_deref()), (Kind::Use, Some("magento")));
        assert_eq!(c("  /* nothing */ ").kind, Kind::Empty);
    }

    #[test]
    fn writer_only_tables_are_found_wherever_named() {
        let m = TableMatcher::new(&["quote", "quote_*", "sales_*"]);
        assert!(m.matches_sql(b"SELECT * FROM quote WHERE entity_id = 1"));
        assert!(m.matches_sql(b"SELECT * FROM `magento`.`quote_item` qi"));
        assert!(m.matches_sql(b"select a.* from catalog_product_entity a join SALES_ORDER o on 1"));
        assert!(!m.matches_sql(b"SELECT * FROM catalog_product_entity"));
        assert!(!m.matches_sql(b"SELECT 'quote' FROM t"));
        assert!(!m.matches_sql(b"SELECT * FROM quotes"));
        assert!(!TableMatcher::new::<&str>(&[]).matches_sql(b"SELECT * FROM quote"));
    }

    #[test]
    fn fingerprints_fold_literals_and_lists() {
        assert_eq!(
            fingerprint(b"select * from t where id in (1, 2, 3) and name = 'x'"),
            "SELECT * FROM t WHERE id IN (?+) AND name = ?"
        );
        assert_eq!(
            fingerprint(b"SELECT  *  FROM t /* c */ WHERE id IN (4);"),
            "SELECT * FROM t WHERE id IN (?)"
        );
        assert_eq!(
            fingerprint(b"SELECT GET_LOCK('magento|cron', 60);"),
            "SELECT GET_LOCK(?+)"
        );
        assert_eq!(
            fingerprint(b"INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')"),
            "INSERT INTO t(a, b) VALUES (?+), (?+)"
        );
        let long = format!("SELECT {} FROM t", "a, ".repeat(1000));
        assert!(fingerprint(long.as_bytes()).len() <= MAX_FINGERPRINT + 4);
    }

    proptest! {
        #[test]
        fn classify_never_panics(sql in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = fingerprint(&sql);
            let _ = TableMatcher::new(&["quote_*"]).matches_sql(&sql);
            let _ = classify(&sql);
        }

        #[test]
        fn classify_never_panics_on_sqlish_text(sql in "[a-zA-Z@:=;'`\"#/*!(),. \n-]{0,80}") {
            let _ = classify(sql.as_bytes());
        }
    }
}
