//! Test support: a real `kessai` engine process on an ephemeral port with
//! its own RocksDB in a temp dir, and a client to talk to it over TCP.
#![allow(dead_code)]

use kessai::client::Client;
use kessai::pin::{Pin, PinHasher};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The PIN secret the tests configure, so they can compute which shard a
/// card lives on.
pub const SECRET_HEX: &str = "6b6573736169207465737420736563726574206b6579203230323621";

pub fn hasher() -> PinHasher {
    PinHasher::new(&hex::decode(SECRET_HEX).expect("hex"))
}

/// The shard `pin` lives on when the engine runs `shards` shards.
pub fn shard_of(pin: &str, shards: usize) -> usize {
    hasher()
        .key(&Pin::parse(pin).expect("valid pin"))
        .shard(shards)
}

pub fn kessai_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kessai")
}

/// A running engine process. Dropping it kills the process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

pub struct ServerOptions<'a> {
    pub shards: usize,
    pub env: Vec<(&'a str, &'a str)>,
    pub prepare_timeout_ms: u64,
    /// Serve Prometheus metrics here.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ServerOptions<'_> {
    fn default() -> Self {
        ServerOptions {
            shards: 4,
            env: Vec::new(),
            prepare_timeout_ms: 5000,
            metrics_listen: None,
        }
    }
}

impl Server {
    /// Starts an engine whose data lives under `dir/data`.
    pub fn start(dir: &Path, shards: usize) -> Server {
        Server::start_with(
            dir,
            ServerOptions {
                shards,
                ..ServerOptions::default()
            },
        )
    }

    pub fn start_with(dir: &Path, options: ServerOptions<'_>) -> Server {
        let config = dir.join("kessai.toml");
        let metrics_line = options
            .metrics_listen
            .map(|addr| format!("metrics_listen = \"{addr}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\n{metrics_line}data_dir = \"{}\"\nshards = {}\nworker_threads = 2\npin_secret_hex = \"{SECRET_HEX}\"\n[limits]\nprepare_timeout_ms = {}\n",
                dir.join("data").display(),
                options.shards,
                options.prepare_timeout_ms,
            ),
        )
        .expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("engine.log"))
            .expect("log file");
        let mut command = Command::new(kessai_bin());
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env("KESSAI_LOG", "info")
            .env_remove(kessai::twopc::crashpoint::ENV_VAR)
            .stdout(Stdio::piped())
            .stderr(log);
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn kessai serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the engine never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.join("engine.log")).unwrap_or_default();
                panic!("engine did not start; log:\n{log}");
            }
        };
        let addr = line
            .strip_prefix("kessai listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        Server {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself (a crash point).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("engine.log")).unwrap_or_default()
    }

    /// Runs a `kessai` client subcommand with `--json` against this engine.
    pub fn cli(&self, args: &[&str]) -> (i32, serde_json::Value) {
        cli_at(self.addr, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cli_at(addr: SocketAddr, args: &[&str]) -> (i32, serde_json::Value) {
    let output = Command::new(kessai_bin())
        .args(args)
        .args(["--json", "--addr", &addr.to_string()])
        .output()
        .expect("run kessai");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "kessai {args:?} printed no JSON: stdout {stdout:?} stderr {:?}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), value)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub async fn connect(addr: SocketAddr) -> Client {
    Client::connect(addr).await.expect("connect")
}

/// Issues `count` cards of `face_value_minor` and activates them at
/// `store_id`; returns their PINs.
pub async fn active_cards(
    client: &Client,
    count: u32,
    face_value_minor: u64,
    store_id: u32,
) -> Vec<String> {
    let issued = client.issue(count, face_value_minor).await.expect("issue");
    assert_eq!(issued.pins.len(), count as usize);
    let activated = client
        .activate(store_id, 1, &issued.pins)
        .await
        .expect("activate");
    assert!(
        activated
            .results
            .iter()
            .all(|r| matches!(r, kessai::protocol::ActivationResult::Activated { .. })),
        "{activated:?}"
    );
    issued.pins
}

/// Distinct cards, the i-th on shard `want[i]`: pairwise different shards
/// make a two-phase payment, one shard repeated makes a local one.
pub fn pick_by_shard(pins: &[String], shards: usize, want: &[usize]) -> Vec<String> {
    let mut picked: Vec<String> = Vec::new();
    for &shard in want {
        let pin = pins
            .iter()
            .find(|pin| shard_of(pin, shards) == shard && !picked.contains(pin))
            .unwrap_or_else(|| panic!("no free card on shard {shard}"));
        picked.push(pin.clone());
    }
    picked
}
