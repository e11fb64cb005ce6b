//! Test support: a real `kessai` engine process on an ephemeral port with
//! its own RocksDB in a temp dir, and a client to talk to it over TCP.
#![allow(dead_code)]

pub mod kill_load;
pub mod nats;

use kessai::auth::Key;
use kessai::client::Client;
use kessai::pin::{Pin, PinHasher};
use kessai::protocol::Role;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
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
    /// The ISO 8583 listener's address, when the config turns it on.
    pub iso_addr: Option<SocketAddr>,
    pub dir: PathBuf,
}

pub struct ServerOptions<'a> {
    pub shards: usize,
    pub env: Vec<(&'a str, &'a str)>,
    pub prepare_timeout_ms: u64,
    /// Serve Prometheus metrics here.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve TLS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra lines for the config's `[limits]` table.
    pub limits: Vec<String>,
    /// Lines of an `[iso8583]` table (none: the listener is off).
    pub iso8583: Vec<String>,
    /// Lines of a `[log]` table (the command log's settings).
    pub log: Vec<String>,
}

impl Default for ServerOptions<'_> {
    fn default() -> Self {
        ServerOptions {
            shards: 4,
            env: Vec::new(),
            prepare_timeout_ms: 5000,
            metrics_listen: None,
            tls: None,
            limits: Vec::new(),
            iso8583: Vec::new(),
            log: Vec::new(),
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
        let tls_lines = options
            .tls
            .as_ref()
            .map(|(cert, key)| {
                format!(
                    "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                    cert.display(),
                    key.display()
                )
            })
            .unwrap_or_default();
        let mut limit_lines: String = options.limits.iter().map(|l| format!("{l}\n")).collect();
        for (table, lines) in [("iso8583", &options.iso8583), ("log", &options.log)] {
            if !lines.is_empty() {
                limit_lines.push_str(&format!("[{table}]\n"));
                for line in lines {
                    limit_lines.push_str(&format!("{line}\n"));
                }
            }
        }
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\n{metrics_line}{tls_lines}data_dir = \"{}\"\nshards = {}\nworker_threads = 2\npin_secret_hex = \"{SECRET_HEX}\"\n[limits]\nprepare_timeout_ms = {}\n{limit_lines}",
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
            // The gateway's address, then the ISO 8583 listener's if on.
            for line in lines.by_ref().take(2) {
                match line {
                    Ok(line) => {
                        let _ = tx.send(line);
                    }
                    Err(_) => break,
                }
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
        let iso_addr = (!options.iso8583.is_empty()).then(|| {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the ISO 8583 listener's line");
            line.strip_prefix("kessai iso8583 listening on ")
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .parse()
                .expect("address")
        });
        Server {
            child,
            addr,
            iso_addr,
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

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The engine's resident memory, from `/proc` (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("engine process status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line");
        kib * 1024
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("engine.log")).unwrap_or_default()
    }

    /// The first operator's key file, written by the engine at first start.
    pub fn operator_key_path(&self) -> PathBuf {
        self.dir.join("data").join("operator.key")
    }

    /// Runs a `kessai` client subcommand with `--json` as the operator.
    pub fn cli(&self, args: &[&str]) -> (i32, serde_json::Value) {
        cli_at(self.addr, Some(&self.operator_key_path()), args)
    }

    /// Runs a `kessai` client subcommand with `--json` as `key`.
    pub fn cli_as(&self, key: &Path, args: &[&str]) -> (i32, serde_json::Value) {
        cli_at(self.addr, Some(key), args)
    }

    /// Clients of this engine, one per principal, made on demand.
    pub async fn principals(&self) -> Principals {
        Principals::new(self.addr, &self.operator_key_path()).await
    }
}

/// The principal id of the store HQ the tests register for `store`.
pub fn hq_of(store: u32) -> u32 {
    1_000_000 + store
}

/// An engine's principals: the operator, and merchants and store HQs
/// registered (once each) when first asked for.
pub struct Principals {
    pub addr: SocketAddr,
    pub operator: Client,
    keys: Mutex<HashMap<u32, Key>>,
}

impl Principals {
    pub async fn new(addr: SocketAddr, operator_key: &Path) -> Principals {
        let key = Key::read(operator_key).expect("operator key");
        let operator = Client::connect_as(addr, &key).await.expect("operator");
        Principals::with_operator(addr, operator)
    }

    /// Principals registered through an operator connection the caller
    /// made (over TLS, say).
    pub fn with_operator(addr: SocketAddr, operator: Client) -> Principals {
        Principals {
            addr,
            operator,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The same principals against a restarted engine.
    pub async fn reconnect(self, server: &Server) -> Principals {
        let key = Key::read(&server.operator_key_path()).expect("operator key");
        Principals {
            addr: server.addr,
            operator: Client::connect_as(server.addr, &key)
                .await
                .expect("operator"),
            keys: self.keys,
        }
    }

    /// The key of principal `id`, registered with `role` and `stores` the
    /// first time.
    pub async fn key(&self, id: u32, role: Role, stores: &[u32]) -> Key {
        let known = self.keys.lock().expect("keys").get(&id).cloned();
        if let Some(key) = known {
            return key;
        }
        let key = Key::generate(id);
        self.operator
            .principal_add(&key, role, stores)
            .await
            .expect("add principal");
        self.keys.lock().expect("keys").insert(id, key.clone());
        key
    }

    /// A connection as merchant `id`.
    pub async fn merchant(&self, id: u32) -> Client {
        let key = self.key(id, Role::Merchant, &[]).await;
        Client::connect_as(self.addr, &key).await.expect("merchant")
    }

    /// A connection as the store HQ of `store`.
    pub async fn store(&self, store: u32) -> Client {
        let key = self.key(hq_of(store), Role::StoreHq, &[store]).await;
        Client::connect_as(self.addr, &key).await.expect("store hq")
    }

    /// Writes `id`'s key to a file (for the CLI).
    pub async fn key_file(&self, dir: &Path, id: u32, role: Role, stores: &[u32]) -> PathBuf {
        let key = self.key(id, role, stores).await;
        let path = dir.join(format!("{id}.key"));
        if !path.exists() {
            key.write_new(&path, role.name()).expect("key file");
        }
        path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cli_at(addr: SocketAddr, key: Option<&Path>, args: &[&str]) -> (i32, serde_json::Value) {
    let mut command = Command::new(kessai_bin());
    command
        .args(args)
        .args(["--json", "--addr", &addr.to_string()])
        .env_remove("KESSAI_KEY");
    if let Some(key) = key {
        command.arg("--key").arg(key);
    }
    let output = command.output().expect("run kessai");
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

/// Issues `count` cards of `face_value_minor` (as the operator) and
/// activates them at `store_id` (as its HQ); returns their PINs.
pub async fn active_cards(
    principals: &Principals,
    count: u32,
    face_value_minor: u64,
    store_id: u32,
) -> Vec<String> {
    let issued = principals
        .operator
        .issue(count, face_value_minor)
        .await
        .expect("issue");
    assert_eq!(issued.pins.len(), count as usize);
    let activated = principals
        .store(store_id)
        .await
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

/// A raw TCP connection to an engine, for tests that write bytes
/// themselves: frames are read whole, and what a read brings beyond one
/// frame is kept for the next.
pub struct Raw {
    pub stream: std::net::TcpStream,
    buffer: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Raw {
            stream,
            buffer: Vec::new(),
        }
    }

    pub fn send(&mut self, correlation_id: u64, request: &kessai::protocol::Request) {
        use std::io::Write;
        self.stream
            .write_all(&frame_of(correlation_id, request))
            .expect("write");
    }

    /// Reads until the engine closes the connection; false if it is still
    /// open after the read timeout.
    pub fn closed_by_engine(&mut self) -> bool {
        use std::io::Read;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error) => {
                    return matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    );
                }
            }
        }
    }

    /// The next whole frame from the engine.
    pub fn next(&mut self) -> (u64, kessai::protocol::Response) {
        use std::io::Read;
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some((frame, used))) = kessai::protocol::frame::parse(&self.buffer, 1 << 24) {
                let response = kessai::protocol::Response::decode(frame.kind, frame.body)
                    .expect("engine frames decode");
                let correlation_id = frame.correlation_id;
                self.buffer.drain(..used);
                return (correlation_id, response);
            }
            let read = self.stream.read(&mut chunk).expect("read");
            assert!(read > 0, "closed before a whole frame");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

/// One request as frame bytes.
pub fn frame_of(correlation_id: u64, request: &kessai::protocol::Request) -> Vec<u8> {
    let mut out = Vec::new();
    request
        .encode(&mut out, correlation_id, 1 << 20)
        .expect("encode");
    out
}

/// A raw connection that has done the handshake as `key` (correlation ids
/// 1 and 2).
pub fn raw_connection(addr: SocketAddr, key: &Key) -> Raw {
    use kessai::protocol::{AuthHello, AuthProof, Request, Response};
    let mut raw = Raw::connect(addr);
    let client_nonce = [7u8; 32];
    raw.send(
        1,
        &Request::AuthHello(AuthHello {
            principal: key.principal,
            client_nonce,
        }),
    );
    let Response::Challenge(challenge) = raw.next().1 else {
        panic!("no challenge");
    };
    let proof = key.proof(&client_nonce, &challenge.server_nonce);
    raw.send(2, &Request::AuthProof(AuthProof { proof }));
    assert!(matches!(raw.next().1, Response::Welcome(_)));
    raw
}

/// A random 16-digit PIN with a valid check digit (a guess).
pub fn guess(state: &mut u64) -> String {
    let mut digits: Vec<u8> = (0..15)
        .map(|index| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            let low = u64::from(index == 0);
            (low + *state % (10 - low)) as u8
        })
        .collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// A port free a moment ago (the engine binds it right after).
pub fn free_local_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// `GET /metrics`; returns every sample line as `name{labels}` → value.
pub fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: kessai\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &text[text.find("\r\n\r\n").expect("headers end") + 4..];
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A self-signed certificate for 127.0.0.1 and localhost; returns the
/// certificate and key PEM paths.
pub fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).expect("certificate");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}
