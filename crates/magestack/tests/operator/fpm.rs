//! A PHP-FPM master of a test's own serving the storefront, so a test can
//! stop it (the shared one from scripts/deps must stay up for the others).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Killed (SIGTERM, so the workers go too) when dropped or [`Fpm::stop`]ped.
pub struct Fpm {
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Fpm {
    /// Starts `pm = static` with `children` on `127.0.0.1:port`, waits until it listens.
    pub fn start(port: u16, children: u32) -> Fpm {
        let fpm = std::env::var("MAGESTACK_PHP_FPM").unwrap_or_else(|_| {
            panic!("MAGESTACK_PHP_FPM is not set: run ./scripts/test (scripts/deps finds php-fpm)")
        });
        let storefront = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/storefront");
        let dir = tempfile::tempdir().unwrap();
        let var = dir.path().join("var");
        std::fs::create_dir_all(var.join("sessions")).unwrap();
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let user = if root {
            "user = root\ngroup = root\n"
        } else {
            ""
        };
        let conf = format!(
            "[global]\nerror_log = {log}\ndaemonize = no\n\n[frontend]\n{user}listen = 127.0.0.1:{port}\n\
             pm = static\npm.max_children = {children}\nclear_env = no\nchdir = {storefront}/pub\n\
             env[MAGESTACK_STOREFRONT_VAR] = {var}\n",
            log = dir.path().join("fpm.log").display(),
            var = var.display(),
        );
        let conf_path = dir.path().join("php-fpm.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(&fpm);
        cmd.arg("--fpm-config").arg(&conf_path).arg("--nodaemonize");
        if root {
            cmd.arg("--allow-to-run-as-root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {fpm}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "php-fpm did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Fpm {
            child: Some(child),
            _dir: dir,
        }
    }

    /// Stops the master and its workers, as `systemctl stop php-fpm` does.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Fpm {
    fn drop(&mut self) {
        self.stop();
    }
}
