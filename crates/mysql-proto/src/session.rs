//! The per-client session state machine: whether the client's session must
//! stay on one backend connection (pinned), and why; which session
//! variables and schema its backend must have; where a statement may run;
//! and what must happen to the backend when the client leaves.
//!
//! Call protocol (the shell drives it):
//! 1. For each `COM_QUERY`, [`classify`](crate::classify::classify) the
//!    text, ask [`Session::route`] where it may run (unless
//!    [`Session::is_pinned`], when it runs on the pinned backend).
//! 2. Before sending it on a borrowed backend, bring the backend to
//!    [`Session::vars`] and [`Session::schema`] ([`replay_sql`]).
//! 3. After the response, call [`Session::after_query`] with what the
//!    server said ([`Outcome`]); for the other commands the `on_*` methods.
//! 4. When the client leaves, [`Session::release`] says whether the backend
//!    may go back to the pool as is, must be reset, or must be closed.
//!
//! Pinning is decided from the server's answers first (the `IN_TRANS`
//! status flag, `GET_LOCK`'s result, session-state tracking) and from the
//! classifier second.

use std::time::{Duration, Instant};

use crate::classify::{Kind, Statement};
use crate::consts::status;
use crate::response::StateChange;

/// Why a session is pinned to its backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PinReason {
    /// A transaction is open (`SERVER_STATUS_IN_TRANS`).
    Transaction,
    /// `GET_LOCK` holds at least one lock.
    Lock,
    /// A temporary table was created.
    TemporaryTable,
    /// `LOCK TABLES` holds.
    LockTables,
    /// A user variable was assigned.
    UserVariable,
    /// Server-side prepared statements exist (`COM_STMT_PREPARE` or text
    /// `PREPARE`).
    PreparedStatement,
    /// `SQL_CALC_FOUND_ROWS`: a later `FOUND_ROWS()` needs this backend.
    FoundRows,
    /// A `SET` the proxy cannot replay (`autocommit`, `SET TRANSACTION`, an
    /// expression, an unlisted variable).
    SessionVariable,
    /// The last statement produced an auto-increment id: the next
    /// statement may read `LAST_INSERT_ID()`.
    LastInsertId,
    /// The server reported a state change the classifier did not expect.
    UntrackedState,
}

impl PinReason {
    /// Every reason, for metrics.
    pub const ALL: [PinReason; 10] = [
        Self::Transaction,
        Self::Lock,
        Self::TemporaryTable,
        Self::LockTables,
        Self::UserVariable,
        Self::PreparedStatement,
        Self::FoundRows,
        Self::SessionVariable,
        Self::LastInsertId,
        Self::UntrackedState,
    ];

    /// A label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Lock => "lock",
            Self::TemporaryTable => "temporary_table",
            Self::LockTables => "lock_tables",
            Self::UserVariable => "user_variable",
            Self::PreparedStatement => "prepared_statement",
            Self::FoundRows => "found_rows",
            Self::SessionVariable => "session_variable",
            Self::LastInsertId => "last_insert_id",
            Self::UntrackedState => "untracked_state",
        }
    }
}

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The writer.
    Writer,
    /// A reader (replica), if one is healthy; else the writer.
    Reader,
}

/// What to do with the backend when its client leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Back to the pool as it is.
    Pool,
    /// `COM_RESET_CONNECTION` first (rolls back, drops temporary tables,
    /// user variables and prepares), then back to the pool.
    Reset,
    /// Close it: user locks are held, and MariaDB does not document that a
    /// reset releases them.
    Close,
}

/// What the server answered to a statement.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome<'a> {
    /// True when the response ended without an ERR packet.
    pub ok: bool,
    /// Status flags of the last OK/EOF packet.
    pub final_status: Option<u16>,
    /// First column of the first row, when there was a row (`None` inside:
    /// SQL NULL).
    pub first_value: Option<Option<&'a [u8]>>,
    /// `last_insert_id` of the final OK packet.
    pub last_insert_id: u64,
    /// Session-state changes the server reported.
    pub state_changes: &'a [StateChange],
}

/// Ordered session variables (`name` → SQL value text), in the order they
/// were set, so a replay sets `NAMES` before a later `character_set_results`.
pub type Vars = Vec<(String, String)>;

const NAMES_VARS: [&str; 4] = [
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
];

/// Session variables the server reports (with `session_track_system_variables
/// = '*'`) that describe the previous statement rather than the session.
const RESULT_VARIABLES: &[&str] = &[
    "last_insert_id",
    "insert_id",
    "identity",
    "last_gtid",
    "warning_count",
    "error_count",
    "timestamp",
];

/// The character set and collation of a backend session right after login
/// or `COM_RESET_CONNECTION`: the proxy logs in to every server with
/// collation 45 (`consts::UTF8MB4_GENERAL_CI`). A session without a `names`
/// variable expects this.
pub const LOGIN_NAMES: &str = "utf8mb4 COLLATE utf8mb4_general_ci";

/// Sets `name = value` in `vars`: replaces the earlier value (and, for
/// `names`, the four variables `SET NAMES` sets).
pub fn set_var(vars: &mut Vars, name: &str, value: &str) {
    vars.retain(|(n, _)| n != name && !(name == "names" && NAMES_VARS.contains(&n.as_str())));
    vars.push((name.to_owned(), value.to_owned()));
}

/// The `SET` that brings a backend whose session has `have` to `want`, or
/// `None` when they already match (the common case: every Magento client
/// sends the same prologue).
pub fn replay_sql(have: &Vars, want: &Vars) -> Option<String> {
    if have == want {
        return None;
    }
    let mut parts = Vec::new();
    for (n, _) in have {
        if !want.iter().any(|(w, _)| w == n) {
            parts.push(if n == "names" {
                // What the session had at login (not `NAMES DEFAULT`, the
                // server's global default, which may differ).
                format!("NAMES {LOGIN_NAMES}")
            } else {
                format!("SESSION {n} = DEFAULT")
            });
        }
    }
    for (n, v) in want {
        parts.push(if n == "names" {
            format!("NAMES {v}")
        } else {
            format!("SESSION {n} = {v}")
        });
    }
    Some(format!("SET {}", parts.join(", ")))
}

/// One client's session.
#[derive(Debug, Clone)]
pub struct Session {
    in_trans: bool,
    locks: u32,
    temp_tables: bool,
    lock_tables: bool,
    user_vars: bool,
    prepared: u32,
    text_prepared: bool,
    found_rows: bool,
    set_pinned: bool,
    last_insert: bool,
    untracked: bool,
    multi_statements: bool,
    vars: Vars,
    schema: Option<String>,
    last_write: Option<Instant>,
    /// The client's login collation as `SET NAMES` text, when it is not
    /// [`LOGIN_NAMES`] (kept across `COM_RESET_CONNECTION`).
    login_names: Option<String>,
}

impl Session {
    /// A fresh session after the handshake.
    pub fn new(schema: Option<String>, multi_statements: bool) -> Self {
        Self {
            in_trans: false,
            locks: 0,
            temp_tables: false,
            lock_tables: false,
            user_vars: false,
            prepared: 0,
            text_prepared: false,
            found_rows: false,
            set_pinned: false,
            last_insert: false,
            untracked: false,
            multi_statements,
            vars: Vec::new(),
            schema,
            last_write: None,
            login_names: None,
        }
    }

    /// The collation the client named in its handshake (or
    /// `COM_CHANGE_USER`), as `SET NAMES` text (`charset COLLATE
    /// collation`); `None` for one the server does not know (the server
    /// then uses its default, as the proxy does). The session's charset
    /// variables start from it, replayed like `SET NAMES` when a borrowed
    /// backend differs, until the client sets its own.
    pub fn set_login_names(&mut self, names: Option<&str>) {
        self.login_names = names.filter(|n| *n != LOGIN_NAMES).map(str::to_owned);
        match &self.login_names {
            Some(n) => set_var(&mut self.vars, "names", n),
            None => self.vars.retain(|(n, _)| n != "names"),
        }
    }

    /// Why the session is pinned, first reason first; empty when it is not.
    pub fn pin_reasons(&self) -> Vec<PinReason> {
        let flags = [
            (self.in_trans, PinReason::Transaction),
            (self.locks > 0, PinReason::Lock),
            (self.temp_tables, PinReason::TemporaryTable),
            (self.lock_tables, PinReason::LockTables),
            (self.user_vars, PinReason::UserVariable),
            (
                self.prepared > 0 || self.text_prepared,
                PinReason::PreparedStatement,
            ),
            (self.found_rows, PinReason::FoundRows),
            (self.set_pinned, PinReason::SessionVariable),
            (self.last_insert, PinReason::LastInsertId),
            (self.untracked, PinReason::UntrackedState),
        ];
        flags
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, r)| *r)
            .collect()
    }

    /// True when the session must keep its backend connection.
    pub fn is_pinned(&self) -> bool {
        self.in_trans
            || self.locks > 0
            || self.temp_tables
            || self.lock_tables
            || self.user_vars
            || self.prepared > 0
            || self.text_prepared
            || self.found_rows
            || self.set_pinned
            || self.last_insert
            || self.untracked
    }

    /// `GET_LOCK` locks held, as counted.
    pub fn locks(&self) -> u32 {
        self.locks
    }

    /// The session variables a borrowed backend must have.
    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    /// The schema a borrowed backend must have.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Whether the client has multi-statements on (its capability, then
    /// `COM_SET_OPTION`).
    pub fn multi_statements(&self) -> bool {
        self.multi_statements
    }

    /// Where `st` may run. Reads go to a reader only outside transactions and
    /// pins, and not within `read_your_writes` of the session's last
    /// non-read statement.
    pub fn route(&self, st: &Statement, now: Instant, read_your_writes: Duration) -> Route {
        let recent_write = self
            .last_write
            .is_some_and(|t| now.saturating_duration_since(t) < read_your_writes);
        if st.is_read_only() && !self.is_pinned() && !recent_write {
            Route::Reader
        } else {
            Route::Writer
        }
    }

    /// Records the response to a `COM_QUERY` classified as `st`.
    pub fn after_query(&mut self, st: &Statement, out: &Outcome<'_>, now: Instant) {
        if !st.is_read_only() {
            self.last_write = Some(now);
        }
        self.last_insert = false;
        if let Some(s) = out.final_status {
            self.in_trans = s & status::IN_TRANS != 0;
        }
        self.track_state(st, out);
        if !out.ok {
            // Conservative: a failed multi-function lock statement may have
            // taken some locks; a failed SET changed nothing.
            if st.get_lock > 0 && !st.lock_result_first {
                self.locks += st.get_lock;
            }
            return;
        }
        self.last_insert = out.last_insert_id != 0;
        // Locks: exact when the statement is `SELECT GET_LOCK(…)` alone,
        // otherwise counted from the calls (unpinned only by
        // RELEASE_ALL_LOCKS or by leaving).
        if st.lock_result_first {
            let one = out.first_value == Some(Some(b"1".as_slice()));
            if st.get_lock == 1 && one {
                self.locks += 1;
            } else if st.release_lock == 1 && one {
                self.locks = self.locks.saturating_sub(1);
            }
        } else {
            self.locks += st.get_lock;
        }
        if st.release_all_locks {
            self.locks = 0;
        }
        match st.kind {
            Kind::CreateTemporary => self.temp_tables = true,
            Kind::LockTables => self.lock_tables = true,
            Kind::UnlockTables => self.lock_tables = false,
            Kind::PrepareText => self.text_prepared = true,
            Kind::Use => {
                if let Some(s) = &st.schema {
                    self.schema = Some(s.clone());
                }
            }
            Kind::Set => {
                for a in &st.assignments {
                    set_var(&mut self.vars, &a.name, &a.value);
                }
                if st.set_other {
                    self.set_pinned = true;
                }
            }
            _ => {}
        }
        if st.user_var_write {
            self.user_vars = true;
        }
        if st.calc_found_rows {
            self.found_rows = true;
        }
        if st.multi {
            // The classifier sees only the first statement's kind: whatever
            // the others did to the session is unknown.
            self.untracked = true;
        }
    }

    /// The safety net: changes the server reports that the classifier did
    /// not predict pin the session.
    fn track_state(&mut self, st: &Statement, out: &Outcome<'_>) {
        for c in out.state_changes {
            match c {
                StateChange::Schema(s) => {
                    self.schema = Some(String::from_utf8_lossy(s).into_owned())
                }
                StateChange::SystemVariable { name, .. } => {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    // Variables that describe the last statement's result,
                    // not session state a later client could inherit.
                    if RESULT_VARIABLES.contains(&name.as_str()) {
                        continue;
                    }
                    let explained = st.kind == Kind::Set
                        && st.assignments.iter().any(|a| {
                            a.name == name
                                || (a.name == "names" && NAMES_VARS.contains(&name.as_str()))
                        });
                    if !explained && !st.set_other {
                        self.untracked = true;
                    }
                }
                StateChange::StateChanged(true) => {
                    let explained = matches!(
                        st.kind,
                        Kind::Set
                            | Kind::Use
                            | Kind::CreateTemporary
                            | Kind::DropTemporary
                            | Kind::PrepareText
                            | Kind::LockTables
                            | Kind::UnlockTables
                    ) || st.user_var_write
                        || st.get_lock > 0
                        // MariaDB flags a new auto-increment id as a state
                        // change; it is tracked as `LastInsertId`.
                        || (st.kind == Kind::Write && out.last_insert_id != 0);
                    if !explained {
                        self.untracked = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// `COM_INIT_DB` succeeded.
    pub fn on_init_db(&mut self, schema: &[u8]) {
        self.schema = Some(String::from_utf8_lossy(schema).into_owned());
    }

    /// `COM_STMT_PREPARE` succeeded. Server-side statements pin: their ids
    /// belong to one backend connection, and re-preparing them elsewhere
    /// would need id mapping and replay of long data; Magento does not use
    /// them (its prepares are emulated), so exact and simple wins.
    pub fn on_prepare(&mut self) {
        self.prepared += 1;
    }

    /// `COM_STMT_CLOSE`.
    pub fn on_stmt_close(&mut self) {
        self.prepared = self.prepared.saturating_sub(1);
    }

    /// `COM_SET_OPTION` succeeded.
    pub fn on_set_option(&mut self, multi_statements: bool) {
        self.multi_statements = multi_statements;
    }

    /// Status flags of a response to a command other than `COM_QUERY`
    /// (e.g. `COM_STMT_EXECUTE`): only the transaction flag is read.
    pub fn on_status(&mut self, st: u16) {
        self.in_trans = st & status::IN_TRANS != 0;
    }

    /// The backend connection holding this session was lost: the server
    /// rolled back and dropped locks, temporary tables and variables there.
    /// Pins clear; the replayable variables and schema stay (they are
    /// replayed on the next backend).
    pub fn on_backend_lost(&mut self) {
        let (vars, schema) = (std::mem::take(&mut self.vars), self.schema.take());
        let login = self.login_names.take();
        *self = Self::new(schema, self.multi_statements);
        self.vars = vars;
        self.login_names = login;
    }

    /// `COM_RESET_CONNECTION` succeeded: the server dropped everything.
    /// The login collation stays, as on a direct connection.
    pub fn on_reset_connection(&mut self) {
        let schema = self.schema.take();
        let login = self.login_names.take();
        *self = Self::new(schema, self.multi_statements);
        self.set_login_names(login.as_deref());
    }

    /// What to do with the backend when the client leaves.
    pub fn release(&self) -> Release {
        if self.locks > 0 {
            Release::Close
        } else if self.is_pinned() && !(self.pin_reasons() == [PinReason::LastInsertId]) {
            Release::Reset
        } else {
            Release::Pool
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::classify::classify;

    fn run(s: &mut Session, sql: &str, out: Outcome<'_>) {
        s.after_query(&classify(sql.as_bytes()), &out, Instant::now());
    }
    fn ok(status: u16) -> Outcome<'static> {
        Outcome {
            ok: true,
            final_status: Some(status),
            ..Default::default()
        }
    }

    #[test]
    fn transaction_pins_from_status_flags_until_they_clear() {
        let mut s = Session::new(None, false);
        run(&mut s, "START TRANSACTION", ok(status::IN_TRANS));
        assert_eq!(s.pin_reasons(), vec![PinReason::Transaction]);
        assert_eq!(s.release(), Release::Reset);
        run(&mut s, "SELECT 1", ok(status::IN_TRANS));
        assert!(s.is_pinned());
        run(&mut s, "COMMIT", ok(status::AUTOCOMMIT));
        assert!(!s.is_pinned());
        // A transaction opened by something the classifier does not know.
        run(&mut s, "CALL p()", ok(status::IN_TRANS));
        assert!(s.is_pinned());
    }

    #[test]
    fn locks_are_counted_and_unpin_at_zero() {
        let mut s = Session::new(None, false);
        let one = Outcome {
            first_value: Some(Some(b"1")),
            ..ok(2)
        };
        let zero = Outcome {
            first_value: Some(Some(b"0")),
            ..ok(2)
        };
        run(&mut s, "SELECT GET_LOCK('a', 0);", zero);
        assert!(!s.is_pinned());
        run(&mut s, "SELECT GET_LOCK('a', 0);", one);
        run(&mut s, "SELECT GET_LOCK('b', 0);", one);
        assert_eq!((s.locks(), s.release()), (2, Release::Close));
        run(&mut s, "SELECT RELEASE_LOCK('a');", one);
        assert!(s.is_pinned());
        run(&mut s, "SELECT RELEASE_LOCK('b');", one);
        assert!(!s.is_pinned());
        run(&mut s, "SELECT 1, GET_LOCK('c', 0)", one);
        assert_eq!(s.locks(), 1);
        run(&mut s, "DO RELEASE_ALL_LOCKS()", ok(2));
        assert_eq!(s.locks(), 0);
    }

    #[test]
    fn magento_prologue_is_replayed_not_pinned() {
        let mut s = Session::new(Some("magento".into()), false);
        for q in [
            "SET SQL_MODE=''",
            "SET time_zone = '+00:00'",
            "SET NAMES utf8",
        ] {
            run(&mut s, q, ok(2));
        }
        assert!(!s.is_pinned());
        let want = s.vars().clone();
        assert_eq!(
            replay_sql(&Vec::new(), &want).as_deref(),
            Some("SET SESSION sql_mode = '', SESSION time_zone = '+00:00', NAMES utf8")
        );
        assert_eq!(replay_sql(&want, &want), None);
        let mut other = want.clone();
        set_var(&mut other, "foreign_key_checks", "0");
        assert_eq!(
            replay_sql(&other, &want).as_deref(),
            Some("SET SESSION foreign_key_checks = DEFAULT, SESSION sql_mode = '', SESSION time_zone = '+00:00', NAMES utf8")
        );
    }

    #[test]
    fn the_login_collation_is_replayed_until_set_names_and_survives_a_reset() {
        let mut s = Session::new(None, false);
        s.set_login_names(Some(LOGIN_NAMES));
        assert!(s.vars().is_empty());
        s.set_login_names(Some("latin1 COLLATE latin1_swedish_ci"));
        assert_eq!(
            replay_sql(&Vec::new(), s.vars()).as_deref(),
            Some("SET NAMES latin1 COLLATE latin1_swedish_ci")
        );
        // Back from latin1 to a session that expects the login default.
        assert_eq!(
            replay_sql(s.vars(), &Vec::new()).as_deref(),
            Some("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci")
        );
        run(&mut s, "SET NAMES utf8", ok(2));
        assert_eq!(s.vars(), &vec![("names".to_owned(), "utf8".to_owned())]);
        assert!(!s.is_pinned());
        s.on_reset_connection();
        assert_eq!(
            s.vars(),
            &vec![(
                "names".to_owned(),
                "latin1 COLLATE latin1_swedish_ci".to_owned()
            )]
        );
        s.on_backend_lost();
        assert_eq!(s.vars().len(), 1);
    }

    #[test]
    fn temporary_tables_user_variables_and_unreplayable_sets_pin_until_reset() {
        for (sql, reason) in [
            (
                "CREATE TEMPORARY TABLE t (a int)",
                PinReason::TemporaryTable,
            ),
            ("SET @x = 1", PinReason::UserVariable),
            ("SELECT @x := 1", PinReason::UserVariable),
            ("SET autocommit = 0", PinReason::SessionVariable),
            ("LOCK TABLES t WRITE", PinReason::LockTables),
            ("PREPARE s FROM 'SELECT 1'", PinReason::PreparedStatement),
            ("SELECT SQL_CALC_FOUND_ROWS * FROM t", PinReason::FoundRows),
        ] {
            let mut s = Session::new(None, false);
            run(&mut s, sql, ok(2));
            assert_eq!(s.pin_reasons(), vec![reason], "{sql}");
            assert_eq!(s.release(), Release::Reset, "{sql}");
            s.on_reset_connection();
            assert!(!s.is_pinned());
        }
    }

    #[test]
    fn last_insert_id_holds_the_backend_for_one_statement() {
        let mut s = Session::new(None, false);
        let ins = Outcome {
            last_insert_id: 7,
            ..ok(2)
        };
        run(&mut s, "INSERT INTO t VALUES (NULL)", ins);
        assert_eq!(s.pin_reasons(), vec![PinReason::LastInsertId]);
        assert_eq!(s.release(), Release::Pool);
        run(&mut s, "SELECT LAST_INSERT_ID()", ok(2));
        assert!(!s.is_pinned());
    }

    #[test]
    fn unexplained_state_changes_pin() {
        let mut s = Session::new(None, false);
        let changes = [StateChange::StateChanged(true)];
        let out = Outcome {
            state_changes: &changes,
            ..ok(2)
        };
        run(&mut s, "SET NAMES utf8", out);
        assert!(!s.is_pinned());
        run(&mut s, "CALL sets_a_user_variable()", out);
        assert_eq!(s.pin_reasons(), vec![PinReason::UntrackedState]);
    }

    #[test]
    fn reads_route_to_readers_outside_pins_and_the_write_window() {
        let mut s = Session::new(None, false);
        let t0 = Instant::now();
        let w = Duration::from_secs(2);
        let sel = classify(b"SELECT * FROM catalog_product_entity");
        assert_eq!(s.route(&sel, t0, w), Route::Reader);
        assert_eq!(
            s.route(&classify(b"SELECT 1 FOR UPDATE"), t0, w),
            Route::Writer
        );
        s.after_query(&classify(b"INSERT INTO t VALUES (1)"), &ok(2), t0);
        assert_eq!(s.route(&sel, t0 + Duration::from_secs(1), w), Route::Writer);
        assert_eq!(s.route(&sel, t0 + Duration::from_secs(3), w), Route::Reader);
    }
}
