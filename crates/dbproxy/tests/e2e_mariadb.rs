//! End-to-end: real clients (mysql_async, PHP PDO) through the proxy to the
//! MariaDB primary that `scripts/deps` starts (service `mariadb`). Every
//! session test runs with a cap of one backend connection where it can, so
//! two clients share it: each would fail on a naive proxy that takes a new
//! backend connection per statement. A missing MariaDB fails the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Error};

async fn got(c: &mut Conn, q: &str) -> Option<i64> {
    c.query_first::<Option<i64>, _>(q).await.unwrap().flatten()
}

fn code(e: &Error) -> u16 {
    match e {
        Error::Server(s) => s.code,
        other => panic!("not a server error: {other:?}"),
    }
}

#[tokio::test]
async fn magento_prologue_persists_while_two_clients_share_one_backend() {
    let (addr, p) = proxy(1).await;
    let mut a = client(addr).await;
    let mut b = client(addr).await;
    for q in [
        "SET SQL_MODE=''",
        "SET time_zone = '+00:00'",
        "SET NAMES utf8",
    ] {
        a.query_drop(q).await.unwrap();
    }
    b.query_drop("SET time_zone = '+02:00'").await.unwrap();
    for _ in 0..3 {
        let r: (String, String, String) = a
            .query_first("SELECT @@session.time_zone, @@session.sql_mode, @@character_set_client")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, ("+00:00".into(), "".into(), "utf8mb3".into()));
        let tz: String = b
            .query_first("SELECT @@session.time_zone")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tz, "+02:00");
        let mode: String = b
            .query_first("SELECT @@session.sql_mode")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(mode, "", "b never set sql_mode: it must not inherit a's");
    }
    assert_eq!(
        p.writer()
            .stats
            .opened_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn last_insert_id_user_variables_and_temporary_tables_survive_multiplexing() {
    table("e2e_autoinc", "(id INT AUTO_INCREMENT PRIMARY KEY, v INT)").await;
    let (addr, _p) = proxy(1).await;
    let mut a = client(addr).await;
    let mut b = client(addr).await;
    a.query_drop("INSERT INTO e2e_autoinc (v) VALUES (1)")
        .await
        .unwrap();
    let want = a.last_insert_id().unwrap();
    let other = tokio::spawn(async move {
        b.query_drop("INSERT INTO e2e_autoinc (v) VALUES (2)")
            .await
            .unwrap();
        // The insert's id keeps b on the backend for one more statement.
        b.query_drop("DO 1").await.unwrap();
        b
    });
    let got: u64 = a
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, want);
    let mut b = other.await.unwrap();

    a.query_drop("SET @cart = 42").await.unwrap();
    a.query_drop("CREATE TEMPORARY TABLE e2e_tmp (a INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO e2e_tmp VALUES (1), (2)")
        .await
        .unwrap();
    // b waits for the pinned backend (cap 1) … so let a finish first.
    let n: u64 = a
        .query_first("SELECT COUNT(*) FROM e2e_tmp")
        .await
        .unwrap()
        .unwrap();
    let x: u64 = a.query_first("SELECT @cart").await.unwrap().unwrap();
    assert_eq!((n, x), (2, 42));
    a.disconnect().await.unwrap();
    // The backend a pinned was reset before b got it.
    let e = b.query_drop("SELECT * FROM e2e_tmp").await.unwrap_err();
    assert_eq!(code(&e), 1146);
    let x: Option<Option<u64>> = b.query_first("SELECT @cart").await.unwrap();
    assert_eq!(x, Some(None));
}

#[tokio::test]
async fn get_lock_blocks_another_client_until_released_or_its_client_leaves() {
    let (addr, p) = proxy(4).await;
    let mut a = client(addr).await;
    let mut b = client(addr).await;
    assert_eq!(
        got(&mut a, "SELECT GET_LOCK('e2e_cron', 0);").await,
        Some(1)
    );
    for _ in 0..3 {
        a.query_drop("SELECT 1").await.unwrap();
        assert_eq!(
            got(&mut b, "SELECT GET_LOCK('e2e_cron', 0);").await,
            Some(0)
        );
    }
    assert_eq!(
        got(&mut a, "SELECT RELEASE_LOCK('e2e_cron');").await,
        Some(1)
    );
    assert_eq!(
        got(&mut b, "SELECT GET_LOCK('e2e_cron', 0);").await,
        Some(1)
    );
    drop(a);
    b.disconnect().await.unwrap();
    // b left holding the lock: its backend was closed, so the lock is free.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = client(addr).await;
    assert_eq!(
        got(&mut c, "SELECT GET_LOCK('e2e_cron', 0);").await,
        Some(1)
    );
    assert_eq!(
        got(&mut c, "SELECT RELEASE_LOCK('e2e_cron');").await,
        Some(1)
    );
    assert!(
        p.writer()
            .stats
            .closed_with_locks_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn cron_lock_contested_by_five_clients_has_one_winner_each_round() {
    let (addr, _p) = proxy(5).await;
    for round in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..5 {
            tasks.push(tokio::spawn(async move {
                let mut c = client(addr).await;
                let r: Option<i64> = c
                    .query_first("SELECT GET_LOCK('magento|CRON_JOB', 0);")
                    .await
                    .unwrap()
                    .flatten();
                // Hold it until everyone tried.
                tokio::time::sleep(Duration::from_millis(300)).await;
                c.disconnect().await.unwrap();
                r
            }));
        }
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap() == Some(1) {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

#[tokio::test]
async fn transactions_roll_back_commit_and_lock_rows() {
    table("e2e_stock", "(id INT PRIMARY KEY, qty INT)").await;
    let (addr, _p) = proxy(4).await;
    let mut a = client(addr).await;
    let mut b = client(addr).await;
    a.query_drop("INSERT INTO e2e_stock VALUES (1, 100)")
        .await
        .unwrap();
    a.query_drop("START TRANSACTION").await.unwrap();
    a.query_drop("UPDATE e2e_stock SET qty = 0 WHERE id = 1")
        .await
        .unwrap();
    a.query_drop("ROLLBACK").await.unwrap();
    let q: i64 = b
        .query_first("SELECT qty FROM e2e_stock WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q, 100);

    a.query_drop("START TRANSACTION").await.unwrap();
    let _: Option<i64> = a
        .query_first("SELECT qty FROM e2e_stock WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let blocked = tokio::spawn(async move {
        let t = std::time::Instant::now();
        b.query_drop("UPDATE e2e_stock SET qty = qty - 1 WHERE id = 1")
            .await
            .unwrap();
        t.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.query_drop("UPDATE e2e_stock SET qty = qty - 10 WHERE id = 1")
        .await
        .unwrap();
    a.query_drop("COMMIT").await.unwrap();
    let waited = blocked.await.unwrap();
    assert!(
        waited >= Duration::from_millis(400),
        "the row lock held b for {waited:?}"
    );
    let mut c = client(addr).await;
    let q: i64 = c
        .query_first("SELECT qty FROM e2e_stock WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q, 89);
}

#[tokio::test]
async fn twenty_concurrent_checkouts_leave_exactly_the_right_stock() {
    table("e2e_checkout_stock", "(id INT PRIMARY KEY, qty INT)").await;
    table(
        "e2e_checkout_order",
        "(id INT AUTO_INCREMENT PRIMARY KEY, product INT)",
    )
    .await;
    let (addr, _p) = proxy(8).await;
    let mut a = client(addr).await;
    a.query_drop("INSERT INTO e2e_checkout_stock VALUES (1, 1000)")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(tokio::spawn(async move {
            let mut c = client(addr).await;
            c.query_drop("START TRANSACTION").await.unwrap();
            let q: i64 = c
                .query_first("SELECT qty FROM e2e_checkout_stock WHERE id = 1 FOR UPDATE")
                .await
                .unwrap()
                .unwrap();
            c.query_drop(format!(
                "UPDATE e2e_checkout_stock SET qty = {} WHERE id = 1",
                q - 3
            ))
            .await
            .unwrap();
            c.query_drop("INSERT INTO e2e_checkout_order (product) VALUES (1)")
                .await
                .unwrap();
            c.query_drop("COMMIT").await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q: i64 = a
        .query_first("SELECT qty FROM e2e_checkout_stock WHERE id = 1")
        .await
        .unwrap()
        .unwrap();
    let n: i64 = a
        .query_first("SELECT COUNT(*) FROM e2e_checkout_order")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((q, n), (1000 - 60, 20));
}

#[tokio::test]
async fn server_errors_reach_the_client_and_the_connection_stays_usable() {
    table("e2e_unique", "(id INT PRIMARY KEY)").await;
    let (addr, _p) = proxy(2).await;
    let mut a = client(addr).await;
    assert_eq!(code(&a.query_drop("SELEC 1").await.unwrap_err()), 1064);
    a.query_drop("INSERT INTO e2e_unique VALUES (1)")
        .await
        .unwrap();
    assert_eq!(
        code(
            &a.query_drop("INSERT INTO e2e_unique VALUES (1)")
                .await
                .unwrap_err()
        ),
        1062
    );
    assert_eq!(
        code(&a.query_drop("SELECT * FROM e2e_missing").await.unwrap_err()),
        1146
    );
    let one: i64 = a.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    a.ping().await.unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_1045() {
    let (addr, _p) = proxy(1).await;
    let d = db();
    let e = Conn::new(opts(addr, &d.user, "wrong")).await.unwrap_err();
    assert_eq!(code(&e), 1045);
    let e = Conn::new(opts(addr, "root", &d.password))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045);
}

#[tokio::test]
async fn php_pdo_connects_as_magento_does() {
    let (addr, _p) = proxy(2).await;
    let d = db();
    let script = format!(
        r#"
$pdo = new PDO('mysql:host={ip};port={port};dbname={db}', '{user}', getenv('PW'), [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_EMULATE_PREPARES => true,
    PDO::MYSQL_ATTR_USE_BUFFERED_QUERY => true,
    PDO::MYSQL_ATTR_MULTI_STATEMENTS => false,
    PDO::MYSQL_ATTR_INIT_COMMAND => "SET NAMES utf8",
]);
$pdo->query("SET SQL_MODE=''");
$pdo->query("SET time_zone = '+00:00'");
$pdo->query("SET NAMES utf8;");
$pdo->query("CREATE TABLE IF NOT EXISTS e2e_pdo (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10))");
$st = $pdo->prepare("INSERT INTO e2e_pdo (v) VALUES (?)");
$st->execute(['x']);
$id = $pdo->lastInsertId();
$tz = $pdo->query("SELECT @@session.time_zone")->fetchColumn();
$lock = $pdo->query("SELECT GET_LOCK('pdo', 0);")->fetchColumn();
try {{ $pdo->query("SELECT * FROM e2e_nope"); }} catch (PDOException $e) {{ $err = $e->errorInfo[1]; }}
echo json_encode([$id > 0, $tz, $lock, $err]);
"#,
        ip = addr.ip(),
        port = addr.port(),
        db = d.database,
        user = d.user
    );
    let out = tokio::process::Command::new("php")
        .arg("-r")
        .arg(&script)
        .env("PW", &d.password)
        .output()
        .await
        .expect("php-cli (scripts/deps installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "php failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), r#"[true,"+00:00",1,1146]"#);
}

#[tokio::test]
async fn change_user_logs_in_again_and_starts_a_clean_session() {
    use mysql_async::ChangeUserOpts;
    table("e2e_change_user", "(id INT PRIMARY KEY) ENGINE=InnoDB").await;
    // One backend connection: a naive proxy would hand the old session's
    // state (variables, temporary table, lock, open transaction) to the new one.
    let (addr, p) = proxy(1).await;
    let mut c = client(addr).await;
    c.query_drop("SET @cu = 5, time_zone = '+03:00'")
        .await
        .unwrap();
    c.query_drop("CREATE TEMPORARY TABLE e2e_cu_tmp (id INT)")
        .await
        .unwrap();
    assert_eq!(got(&mut c, "SELECT GET_LOCK('e2e_cu', 0)").await, Some(1));
    c.query_drop("START TRANSACTION").await.unwrap();
    c.query_drop("INSERT INTO e2e_change_user VALUES (1)")
        .await
        .unwrap();
    c.change_user(ChangeUserOpts::default()).await.unwrap();
    assert_eq!(got(&mut c, "SELECT @cu").await, None);
    let tz: String = c
        .query_first("SELECT @@session.time_zone")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tz, "SYSTEM");
    let e = c.query_drop("SELECT * FROM e2e_cu_tmp").await.unwrap_err();
    assert_eq!(code(&e), 1146);
    assert_eq!(
        got(&mut c, "SELECT COUNT(*) FROM e2e_change_user").await,
        Some(0),
        "the open transaction was rolled back"
    );
    // The lock went with the old session: another client takes it at once.
    let mut other = client(addr).await;
    assert_eq!(
        got(&mut other, "SELECT GET_LOCK('e2e_cu', 0)").await,
        Some(1)
    );
    drop(other);
    assert!(
        p.writer()
            .stats
            .closed_with_locks_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // A new schema from the packet.
    c.change_user(ChangeUserOpts::default().with_db_name(Some("information_schema".into())))
        .await
        .unwrap();
    let db: String = c.query_first("SELECT DATABASE()").await.unwrap().unwrap();
    assert_eq!(db, "information_schema");
    // A wrong password is refused with 1045 (and the connection closed).
    let e = c
        .change_user(ChangeUserOpts::default().with_pass(Some("wrong".into())))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1045);
}

/// Runs `script` (PHP, `$dsn` and `$pw` defined for it) and returns stdout.
async fn php(dsn: &str, script: &str) -> String {
    let d = db();
    let out = tokio::process::Command::new("php")
        .arg("-r")
        .arg(format!(
            "$dsn = '{dsn};dbname={db}'; $user = '{user}'; $pw = getenv('PW');\n{script}",
            db = d.database,
            user = d.user
        ))
        .env("PW", &d.password)
        .output()
        .await
        .expect("php-cli (scripts/deps installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "php failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_collation_a_client_logs_in_with_is_its_session_charset_through_the_multiplexer() {
    // Two PDO connections sharing the proxy's one backend connection, one
    // logged in as latin1 (collation 8 in its handshake), one as utf8mb4;
    // each must see its own charset, exactly as on direct connections.
    // Then SET NAMES overrides the login charset, and a reset restores it.
    let script = r#"
$a = new PDO($dsn . ';charset=latin1', $user, $pw, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$b = new PDO($dsn . ';charset=utf8mb4', $user, $pw, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
$q = "SELECT CONCAT_WS('/', @@character_set_client, @@character_set_results, @@collation_connection)";
$out = [];
foreach ([$a, $b, $a, $b] as $c) { $out[] = $c->query($q)->fetchColumn(); }
$a->query("SET NAMES utf8");
foreach ([$a, $b, $a] as $c) { $out[] = $c->query($q)->fetchColumn(); }
echo implode(' ', $out);
"#;
    let (addr, _p) = proxy(1).await;
    let through = php(
        &format!("mysql:host={};port={}", addr.ip(), addr.port()),
        script,
    )
    .await;
    let d = db();
    let (host, port) = d.primary.rsplit_once(':').unwrap();
    let direct = php(&format!("mysql:host={host};port={port}"), script).await;
    assert!(
        direct.starts_with("latin1/latin1/latin1_swedish_ci utf8mb4/utf8mb4/"),
        "{direct}"
    );
    assert_eq!(through, direct);
}

/// Lets the primary take packets over 16 MiB (MariaDB's default
/// `max_allowed_packet` is exactly 16 MiB); backend connections opened
/// afterwards see it.
async fn allow_big_packets() {
    admin()
        .await
        .query_drop("SET GLOBAL max_allowed_packet = 67108864")
        .await
        .unwrap();
}

#[tokio::test]
async fn every_protocol_command_works_through_the_proxy_with_mysql_async() {
    allow_big_packets().await;
    // One backend connection: a second client proves what pins and unpins.
    let (addr, _p) = proxy(1).await;
    let d = db();
    let mut c = Conn::new(opts(addr, &d.user, &d.password).max_allowed_packet(Some(64 << 20)))
        .await
        .unwrap();
    let mut other = client(addr).await;
    let quick = std::time::Duration::from_secs(2);

    // COM_STMT_PREPARE / EXECUTE pin; COM_STMT_CLOSE unpins (the other
    // client gets the one backend connection again).
    let st = c.prep("SELECT ? + 1").await.unwrap();
    let v: Option<i64> = c.exec_first(&st, (41,)).await.unwrap();
    assert_eq!(v, Some(42));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), got(&mut other, "SELECT 1"))
            .await
            .is_err(),
        "a prepared statement pins its backend connection"
    );
    c.close(st).await.unwrap();
    let mut other = client(addr).await;
    let v = tokio::time::timeout(quick, got(&mut other, "SELECT 7")).await;
    assert_eq!(v.unwrap(), Some(7), "COM_STMT_CLOSE unpinned");

    // Packets over 16 MiB both ways, and COM_STMT_SEND_LONG_DATA (mysql_async
    // sends a parameter over 16 MiB as long data).
    let n = (16 << 20) + 4321;
    let len: Option<i64> = c
        .query_first(format!("SELECT LENGTH('{}')", "x".repeat(n)))
        .await
        .unwrap();
    assert_eq!(len, Some(n as i64));
    let big: Option<Vec<u8>> = c
        .query_first(format!("SELECT REPEAT('y', {n})"))
        .await
        .unwrap();
    assert_eq!(big.map(|b| b.len()), Some(n));
    let len: Option<i64> = c
        .exec_first("SELECT LENGTH(?)", (vec![b'z'; n],))
        .await
        .unwrap();
    assert_eq!(len, Some(n as i64));

    // COM_QUERY with multi-statements: two result sets in one response
    // (what the later statements did is not classified: it pins).
    let mut r = c
        .query_iter("SELECT 1; SELECT 2 UNION SELECT 3")
        .await
        .unwrap();
    let first: Vec<i64> = r.collect().await.unwrap();
    let second: Vec<i64> = r.collect().await.unwrap();
    drop(r);
    assert_eq!((first, second), (vec![1], vec![2, 3]));

    // COM_RESET_CONNECTION: the session's state is gone and it unpins.
    c.query_drop("SET @kept = 1").await.unwrap();
    c.query_drop("CREATE TEMPORARY TABLE e2e_reset_tmp (id INT)")
        .await
        .unwrap();
    assert!(c.reset().await.unwrap(), "COM_RESET_CONNECTION sent");
    assert_eq!(got(&mut c, "SELECT @kept").await, None);
    let e = c
        .query_drop("SELECT * FROM e2e_reset_tmp")
        .await
        .unwrap_err();
    assert_eq!(code(&e), 1146);
    let v = tokio::time::timeout(quick, got(&mut other, "SELECT 8")).await;
    assert_eq!(v.unwrap(), Some(8), "COM_RESET_CONNECTION unpinned");

    // COM_PING, then COM_QUIT.
    c.ping().await.unwrap();
    c.disconnect().await.unwrap();
    other.disconnect().await.unwrap();
}

#[tokio::test]
async fn php_mysqli_sends_the_other_commands_and_an_unknown_one_gets_1047() {
    // mysqli sends what PDO does not: COM_INIT_DB (select_db),
    // COM_STMT_SEND_LONG_DATA and COM_STMT_RESET, multi_query, ping, and
    // COM_REFRESH, which the proxy does not support: error 1047, and the
    // connection stays usable.
    let (addr, _p) = proxy(1).await;
    let script = format!(
        r#"
mysqli_report(MYSQLI_REPORT_OFF);
$m = new mysqli('{ip}', $user, $pw, 'information_schema', {port});
$out = [];
$out[] = $m->select_db(getenv('DB')) ? $m->query("SELECT DATABASE()")->fetch_row()[0] : 'select_db failed';
$st = $m->prepare("SELECT LENGTH(?), ?");
$blob = null; $n = 5;
$st->bind_param('bi', $blob, $n);
$st->send_long_data(0, str_repeat('a', 70000));
$st->send_long_data(0, str_repeat('b', 30000));
$st->execute();
$st->bind_result($len, $num);
$st->fetch();
$out[] = "$len/$num";
$st->free_result();
$out[] = $st->reset() ? 'reset' : 'reset failed: ' . $st->errno;
$n = 6;
$st->send_long_data(0, 'abc');
$st->execute();
$st->bind_result($len, $num);
$st->fetch();
$out[] = "$len/$num";
$st->close();
$m->multi_query("SELECT 1; SELECT 2");
do {{ if ($r = $m->store_result()) {{ $out[] = $r->fetch_row()[0]; $r->free(); }} }} while ($m->next_result());
$out[] = $m->ping() ? 'ping' : 'no ping';
$out[] = @$m->refresh(MYSQLI_REFRESH_TABLES) ? 'refresh ran' : 'refresh ' . $m->errno;
$out[] = $m->query("SELECT 40 + 2")->fetch_row()[0];
echo implode(' ', $out);
"#,
        ip = addr.ip(),
        port = addr.port()
    );
    let d = db();
    let out = tokio::process::Command::new("php")
        .arg("-r")
        .arg(format!(
            "$user = '{}'; $pw = getenv('PW');\n{script}",
            d.user
        ))
        .env("PW", &d.password)
        .env("DB", &d.database)
        .output()
        .await
        .expect("php-cli (scripts/deps installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("{} 100000/5 reset 3/6 1 2 ping refresh 1047 42", d.database),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn indexer_temporary_table_insert_select_and_rename_swap() {
    // Magento's indexers: build rows in a temporary table, copy them into
    // the replica table, swap it with the live one by RENAME TABLE. A
    // shopper reads the live table in between, through the same proxy.
    let ddl = "(id INT PRIMARY KEY, price INT) ENGINE=InnoDB";
    table("e2e_idx_src", ddl).await;
    table("e2e_idx", ddl).await;
    table("e2e_idx_replica", ddl).await;
    let mut a = admin().await;
    let d = db().database;
    a.query_drop(format!("DROP TABLE IF EXISTS {d}.e2e_idx_outdated"))
        .await
        .unwrap();
    a.query_drop(format!(
        "INSERT INTO {d}.e2e_idx_src VALUES (1, 10), (2, 20), (3, 30)"
    ))
    .await
    .unwrap();
    a.query_drop(format!("INSERT INTO {d}.e2e_idx VALUES (1, 1)"))
        .await
        .unwrap();
    let (addr, _p) = proxy(2).await;
    let mut ix = client(addr).await;
    let mut shopper = client(addr).await;
    ix.query_drop("CREATE TEMPORARY TABLE e2e_idx_tmp (id INT PRIMARY KEY, price INT)")
        .await
        .unwrap();
    assert_eq!(
        got(&mut shopper, "SELECT SUM(price) FROM e2e_idx").await,
        Some(1)
    );
    ix.query_drop("INSERT INTO e2e_idx_tmp SELECT id, price * 2 FROM e2e_idx_src")
        .await
        .unwrap();
    ix.query_drop("DELETE FROM e2e_idx_replica").await.unwrap();
    ix.query_drop("INSERT INTO e2e_idx_replica SELECT * FROM e2e_idx_tmp")
        .await
        .unwrap();
    assert_eq!(
        got(&mut shopper, "SELECT SUM(price) FROM e2e_idx").await,
        Some(1)
    );
    ix.query_drop(
        "RENAME TABLE e2e_idx TO e2e_idx_outdated, e2e_idx_replica TO e2e_idx, \
         e2e_idx_outdated TO e2e_idx_replica",
    )
    .await
    .unwrap();
    assert_eq!(
        got(&mut shopper, "SELECT SUM(price) FROM e2e_idx").await,
        Some(120)
    );
    assert_eq!(
        got(&mut ix, "SELECT SUM(price) FROM e2e_idx_replica").await,
        Some(1)
    );
    ix.query_drop("DROP TEMPORARY TABLE e2e_idx_tmp")
        .await
        .unwrap();
}
