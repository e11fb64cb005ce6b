//! The ISO 8583 listener against a real engine process, over real TCP and
//! real TLS: sessions, activation (replay, face value, wrong store),
//! reversals (void, timeout, forestalled, spent), balance inquiries (own
//! cards only), malformed messages, restart, and reversals racing their
//! activations. The client here is the project's own codec; the pytest
//! suite (tests/iso8583/) drives the same listener with pyiso8583.

mod common;

use common::{Principals, Server, ServerOptions, certificate, hq_of, runtime};
use kessai::iso8583::codec::{self, Message};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

/// The store whose HQ the plain-TCP listener acts as.
const STORE: u32 = 7;
const FACE: u64 = 5000;

fn plain_iso(dir: &Path) -> Server {
    plain_iso_with(dir, ServerOptions::default(), &[])
}

/// An engine of two shards with the plain-TCP listener acting as
/// [`STORE`]'s HQ, `iso_lines` more in its `[iso8583]` table, and
/// `options` otherwise.
fn plain_iso_with(dir: &Path, options: ServerOptions<'_>, iso_lines: &[&str]) -> Server {
    let mut iso8583 = vec![
        "listen = \"127.0.0.1:0\"".to_string(),
        format!("plain_tcp_store_hq = {}", hq_of(STORE)),
    ];
    iso8583.extend(iso_lines.iter().map(|line| line.to_string()));
    Server::start_with(
        dir,
        ServerOptions {
            shards: 2,
            iso8583,
            ..options
        },
    )
}

/// A blocking ISO 8583 client over any stream: one message out, one in.
struct Iso<S: Read + Write> {
    stream: S,
    stan: u32,
}

impl Iso<TcpStream> {
    fn connect(addr: SocketAddr) -> Iso<TcpStream> {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Iso { stream, stan: 0 }
    }
}

impl<S: Read + Write> Iso<S> {
    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next message, or `None` when the engine closed the connection.
    fn receive(&mut self) -> Option<Message> {
        let mut prefix = [0u8; 2];
        self.stream.read_exact(&mut prefix).ok()?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        self.stream.read_exact(&mut body).ok()?;
        Some(Message::decode(&body).expect("the engine sends legal messages"))
    }

    fn call(&mut self, message: &Message) -> Message {
        let mut out = Vec::new();
        message.encode(&mut out, 4096).expect("legal request");
        self.send_raw(&out);
        let reply = self.receive().expect("a reply");
        assert_eq!(reply.get(11), message.get(11), "the reply echoes the STAN");
        reply
    }

    fn next_stan(&mut self) -> String {
        self.stan += 1;
        format!("{:06}", self.stan)
    }

    fn network(&mut self, code: &str) -> String {
        let mut message = Message::new(*b"0800");
        message
            .set(7, "1205063000")
            .set(11, self.next_stan())
            .set(70, code);
        let reply = self.call(&message);
        assert_eq!(&reply.mti, b"0810");
        assert_eq!(reply.get(70), Some(code));
        reply.get(39).expect("DE 39").to_string()
    }

    fn sign_on(&mut self) {
        assert_eq!(self.network("001"), "00");
    }

    fn sale(&mut self, mti: &[u8; 4], pin: &str, amount: u64, store: u32, rrn: &str) -> Message {
        let mut message = Message::new(*mti);
        message
            .set(2, pin)
            .set(3, "220000")
            .set(4, format!("{amount:012}"))
            .set(7, "1205063000")
            .set(11, self.next_stan())
            .set(12, "063000")
            .set(13, "1205")
            .set(37, rrn)
            .set(41, "TERM0001")
            .set(42, format!("{store:015}"))
            .set(49, "392");
        if mti.starts_with(b"042") {
            message.set(90, format!("0200{}{}", "0".repeat(6), "0".repeat(32)));
        }
        message
    }

    fn activate(&mut self, pin: &str, amount: u64, store: u32, rrn: &str) -> Message {
        let message = self.sale(b"0200", pin, amount, store, rrn);
        let reply = self.call(&message);
        assert_eq!(&reply.mti, b"0210");
        reply
    }

    fn reverse(&mut self, mti: &[u8; 4], pin: &str, amount: u64, rrn: &str) -> Message {
        let message = self.sale(mti, pin, amount, STORE, rrn);
        self.call(&message)
    }

    fn balance(&mut self, pin: &str) -> Message {
        let mut message = Message::new(*b"0100");
        message
            .set(2, pin)
            .set(3, "310000")
            .set(7, "1205063000")
            .set(11, self.next_stan());
        let reply = self.call(&message);
        assert_eq!(&reply.mti, b"0110");
        reply
    }
}

fn code(reply: &Message) -> &str {
    reply.get(39).expect("DE 39")
}

/// Registers the HQ of `STORE` (and of store 8) and issues `count` cards.
fn setup(rt: &Runtime, server: &Server, count: u32) -> (Principals, Vec<String>) {
    rt.block_on(async {
        let principals = server.principals().await;
        principals
            .key(hq_of(STORE), kessai::protocol::Role::StoreHq, &[STORE])
            .await;
        let pins = principals
            .operator
            .issue(count, FACE)
            .await
            .expect("issue")
            .pins;
        (principals, pins)
    })
}

fn audit_and_store_owed(rt: &Runtime, principals: &Principals) -> u64 {
    rt.block_on(async {
        let audit = principals.operator.audit().await.expect("audit");
        assert!(audit.ok, "{:?}", audit.problems);
        let report = principals.operator.report().await.expect("report");
        report
            .stores
            .iter()
            .find(|line| line.store_id == STORE)
            .map_or(0, |line| line.owed_minor)
    })
}

#[test]
fn sessions_activations_reversals_and_balances() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = plain_iso(dir.path());
    let (principals, pins) = setup(&rt, &server, 6);
    let mut iso = Iso::connect(server.iso_addr.expect("iso listener"));

    // Before sign-on: echo works, a sale is 91 and not applied.
    assert_eq!(iso.network("301"), "00");
    assert_eq!(
        code(&iso.activate(&pins[0], FACE, STORE, "RRN000000001")),
        "91"
    );
    iso.sign_on();
    assert_eq!(code(&iso.balance(&pins[0])), "14", "the 91 applied nothing");

    // An activation, its replay (same code), another sale of the card.
    let sold = iso.activate(&pins[0], FACE, STORE, "RRN000000001");
    assert_eq!(code(&sold), "00");
    let approval = sold.get(38).expect("DE 38").to_string();
    assert_eq!(approval.len(), 6);
    assert_eq!(sold.get(37), Some("RRN000000001"));
    assert_eq!(sold.get(2), None, "the PIN is never echoed");
    let again = iso.activate(&pins[0], FACE, STORE, "RRN000000001");
    assert_eq!(
        (code(&again), again.get(38)),
        ("00", Some(approval.as_str()))
    );
    assert_eq!(
        code(&iso.activate(&pins[0], FACE, STORE, "RRN000000002")),
        "94"
    );

    // Faults: the wrong face value, another HQ's store, a typo, a currency.
    assert_eq!(
        code(&iso.activate(&pins[1], FACE + 1, STORE, "RRN000000003")),
        "13"
    );
    assert_eq!(code(&iso.activate(&pins[1], FACE, 8, "RRN000000003")), "57");
    let mut typo = pins[1].clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'9' {
        b'0'
    } else {
        typo[last] + 1
    };
    let typo = String::from_utf8(typo).expect("digits");
    assert_eq!(
        code(&iso.activate(&typo, FACE, STORE, "RRN000000003")),
        "14"
    );
    let mut dollars = iso.sale(b"0200", &pins[1], FACE, STORE, "RRN000000003");
    dollars.set(49, "840");
    assert_eq!(code(&iso.call(&dollars)), "13");
    let mut wrong_code = iso.sale(b"0200", &pins[1], FACE, STORE, "RRN000000003");
    wrong_code.set(3, "000000");
    assert_eq!(code(&iso.call(&wrong_code)), "12");

    // Balances: a sold card of ours, an unsold one.
    let balance = iso.balance(&pins[0]);
    assert_eq!(code(&balance), "00");
    assert_eq!(
        balance.get(54),
        Some("0001392C0000000050000002392C000000005000")
    );
    assert_eq!(code(&iso.balance(&pins[1])), "14");

    // A void: the amount must be the original's; then undone, and again.
    assert_eq!(
        code(&iso.reverse(b"0400", &pins[0], 1, "RRN000000001")),
        "13"
    );
    let void = iso.reverse(b"0400", &pins[0], FACE, "RRN000000001");
    assert_eq!((&void.mti, code(&void)), (b"0410", "00"));
    assert_eq!(
        code(&iso.reverse(b"0400", &pins[0], FACE, "RRN000000001")),
        "00"
    );
    assert_eq!(
        code(&iso.activate(&pins[0], FACE, STORE, "RRN000000001")),
        "57"
    );
    assert_eq!(code(&iso.balance(&pins[0])), "14", "reversed: unsold again");

    // A timeout reversal before its activation forestalls it; its repeat
    // (0421) is answered the same.
    let forestalled = iso.reverse(b"0420", &pins[2], FACE, "RRN000000004");
    assert_eq!((&forestalled.mti, code(&forestalled)), (b"0430", "00"));
    assert_eq!(
        code(&iso.reverse(b"0421", &pins[2], FACE, "RRN000000004")),
        "00"
    );
    assert_eq!(
        code(&iso.activate(&pins[2], FACE, STORE, "RRN000000004")),
        "57"
    );
    let mut no_original = iso.sale(b"0420", &pins[2], FACE, STORE, "RRN000000004");
    no_original.set(90, format!("0100{}", "0".repeat(38)));
    assert_eq!(code(&iso.call(&no_original)), "12");

    // A card a merchant spent from cannot be reversed.
    assert_eq!(
        code(&iso.activate(&pins[3], FACE, STORE, "RRN000000005")),
        "00"
    );
    rt.block_on(async {
        let merchant = principals.merchant(1).await;
        let paid = merchant.pay(1, 100, &pins[3..4]).await.expect("pay");
        assert!(paid.is_approved(), "{paid:?}");
    });
    assert_eq!(
        code(&iso.reverse(b"0400", &pins[3], FACE, "RRN000000005")),
        "05"
    );

    // A card another HQ's store sold: 57 on a balance inquiry.
    rt.block_on(async {
        let other = principals.store(8).await;
        other.activate(8, 1, &pins[4..5]).await.expect("activate");
    });
    assert_eq!(code(&iso.balance(&pins[4])), "57");

    // After sign-off, financial messages are 91 again.
    assert_eq!(iso.network("002"), "00");
    assert_eq!(
        code(&iso.activate(&pins[5], FACE, STORE, "RRN000000006")),
        "91"
    );
    assert_eq!(code(&iso.balance(&pins[5])), "91");

    // Store 7 owes for pins[3] alone (pins[0] reversed, pins[2] forestalled).
    assert_eq!(audit_and_store_owed(&rt, &principals), FACE);
}

#[test]
fn malformed_messages_get_30_or_a_closed_connection() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = plain_iso(dir.path());
    let (principals, pins) = setup(&rt, &server, 1);
    let addr = server.iso_addr.expect("iso listener");
    let mut iso = Iso::connect(addr);
    iso.sign_on();

    // An 0200 naming a field kessai does not speak (field 5): 30.
    let mut unknown_field = Vec::new();
    let body = [&b"0200"[..], &[0x08, 0, 0, 0, 0, 0, 0, 0], b"000000000000"].concat();
    unknown_field.extend_from_slice(&(body.len() as u16).to_be_bytes());
    unknown_field.extend_from_slice(&body);
    iso.send_raw(&unknown_field);
    let reply = iso.receive().expect("a reply");
    assert_eq!((&reply.mti, code(&reply)), (b"0210", "30"));

    // A required field missing (DE 41): 30, and nothing applied.
    let mut no_terminal = Message::new(*b"0200");
    for (field, value) in iso
        .sale(b"0200", &pins[0], FACE, STORE, "RRN000000001")
        .fields()
    {
        if field != 41 {
            no_terminal.set(field, value);
        }
    }
    assert_eq!(code(&iso.call(&no_terminal)), "30");
    assert_eq!(code(&iso.balance(&pins[0])), "14");

    // An MTI kessai does not serve: 40. The connection carries on.
    let mut advice = iso.sale(b"0200", &pins[0], FACE, STORE, "RRN000000001");
    advice.mti = *b"0220";
    let reply = iso.call(&advice);
    assert_eq!((&reply.mti, code(&reply)), (b"0230", "40"));
    assert_eq!(iso.network("301"), "00");

    // A length prefix past max_message_bytes: closed without a reply.
    iso.send_raw(&[0xFF, 0xFF, b'0', b'2']);
    assert!(iso.receive().is_none(), "closed");

    // An MTI that is not digits: closed too.
    let mut garbage = Iso::connect(addr);
    let body = [&b"02X0"[..], &[0; 8]].concat();
    garbage.send_raw(&[&(body.len() as u16).to_be_bytes()[..], &body].concat());
    assert!(garbage.receive().is_none(), "closed");

    // The engine is unharmed, the books exact.
    let mut after = Iso::connect(addr);
    after.sign_on();
    assert_eq!(
        code(&after.activate(&pins[0], FACE, STORE, "RRN000000001")),
        "00"
    );
    assert_eq!(audit_and_store_owed(&rt, &principals), FACE);
}

#[test]
fn sales_survive_kill_9_and_replay_after_restart() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = plain_iso(dir.path());
    let (_principals, pins) = setup(&rt, &server, 2);
    let mut iso = Iso::connect(server.iso_addr.expect("iso listener"));
    iso.sign_on();
    let sold = iso.activate(&pins[0], FACE, STORE, "000000000042");
    assert_eq!(code(&sold), "00");
    assert_eq!(
        code(&iso.reverse(b"0420", &pins[1], FACE, "000000000043")),
        "00"
    );
    server.kill9();

    let server = plain_iso(dir.path());
    let mut iso = Iso::connect(server.iso_addr.expect("iso listener"));
    iso.sign_on();
    let replay = iso.activate(&pins[0], FACE, STORE, "000000000042");
    assert_eq!((code(&replay), replay.get(38)), ("00", sold.get(38)));
    assert_eq!(
        code(&iso.activate(&pins[1], FACE, STORE, "000000000043")),
        "57"
    );
    assert_eq!(
        code(&iso.reverse(b"0421", &pins[1], FACE, "000000000043")),
        "00"
    );
    let principals = rt.block_on(server.principals());
    assert_eq!(audit_and_store_owed(&rt, &principals), FACE);
}

#[test]
fn reversals_racing_their_activations_never_leave_a_card_sold() {
    let rt = runtime();
    const CARDS: usize = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = plain_iso(dir.path());
    let (principals, pins) = setup(&rt, &server, CARDS as u32);
    let addr = server.iso_addr.expect("iso listener");
    let pins = Arc::new(pins);
    let rrn = |index: usize| format!("RACE{index:08}");
    let activations = {
        let pins = pins.clone();
        std::thread::spawn(move || {
            let mut iso = Iso::connect(addr);
            iso.sign_on();
            (0..CARDS)
                .map(|i| code(&iso.activate(&pins[i], FACE, STORE, &rrn(i))).to_string())
                .collect::<Vec<_>>()
        })
    };
    let reversals = {
        let pins = pins.clone();
        std::thread::spawn(move || {
            let mut iso = Iso::connect(addr);
            iso.sign_on();
            (0..CARDS)
                .map(|i| code(&iso.reverse(b"0420", &pins[i], FACE, &rrn(i))).to_string())
                .collect::<Vec<_>>()
        })
    };
    let activations = activations.join().expect("activations");
    let reversals = reversals.join().expect("reversals");
    let mut iso = Iso::connect(addr);
    iso.sign_on();
    for i in 0..CARDS {
        // Either order: the reversal is approved, and the card ends unsold.
        assert_eq!(reversals[i], "00", "card {i}");
        assert!(
            activations[i] == "00" || activations[i] == "57",
            "card {i}: {}",
            activations[i]
        );
        assert_eq!(code(&iso.balance(&pins[i])), "14", "card {i} is unsold");
    }
    assert_eq!(audit_and_store_owed(&rt, &principals), 0);
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the listener trusting `ca`, showing `client` (a
/// certificate and its key) if given.
fn tls_connect(addr: SocketAddr, ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> TlsStream {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("connection");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    rustls::StreamOwned::new(connection, tcp)
}

#[test]
fn mutual_tls_admits_registered_certificates_only() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine_cert, engine_key) = certificate(dir.path(), "engine");
    let hq_cert = certificate(dir.path(), "hq");
    let stranger = certificate(dir.path(), "stranger");
    let server = Server::start_with(
        dir.path(),
        ServerOptions {
            shards: 2,
            tls: Some((engine_cert.clone(), engine_key)),
            iso8583: vec!["listen = \"127.0.0.1:0\"".into()],
            ..ServerOptions::default()
        },
    );
    let (_principals, pins) = rt.block_on(async {
        use kessai::client::{Client, Connect, TlsClient};
        let key = kessai::auth::Key::read(&server.operator_key_path()).expect("key");
        let connect = Connect {
            key: Some(key),
            tls: Some(TlsClient::from_ca_file(&engine_cert, None).expect("CA")),
        };
        let operator = Client::connect_with(server.addr, &connect)
            .await
            .expect("operator");
        let principals = Principals::with_operator(server.addr, operator);
        principals
            .key(hq_of(STORE), kessai::protocol::Role::StoreHq, &[STORE])
            .await;
        let pins = principals
            .operator
            .issue(1, FACE)
            .await
            .expect("issue")
            .pins;
        (principals, pins)
    });
    let addr = server.iso_addr.expect("iso listener");

    // Registered with the CLI, from the PEM file.
    let hq = hq_of(STORE).to_string();
    let cert_path = hq_cert.0.to_string_lossy().to_string();
    let operator_key = server.operator_key_path();
    let mut command = std::process::Command::new(common::kessai_bin());
    command
        .args([
            "principal",
            "cert",
            "--id",
            &hq,
            "--cert",
            &cert_path,
            "--json",
        ])
        .args(["--addr", &server.addr.to_string(), "--tls-ca"])
        .arg(&engine_cert)
        .arg("--key")
        .arg(&operator_key);
    let output = command.output().expect("run kessai");
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(json["id"], hq_of(STORE));
    assert_eq!(json["fingerprint"].as_str().map(str::len), Some(64));

    // The registered certificate: served as store 7's HQ.
    let mut iso = Iso {
        stream: tls_connect(addr, &engine_cert, Some(&hq_cert)),
        stan: 0,
    };
    iso.sign_on();
    assert_eq!(
        code(&iso.activate(&pins[0], FACE, STORE, "TLS000000001")),
        "00"
    );

    // No certificate, or one nobody registered: the handshake fails.
    for client in [None, Some(&stranger)] {
        let mut refused = Iso {
            stream: tls_connect(addr, &engine_cert, client),
            stan: 0,
        };
        let mut sign_on = Message::new(*b"0800");
        sign_on.set(11, "000001").set(70, "001");
        let mut out = Vec::new();
        sign_on.encode(&mut out, 4096).expect("legal");
        let _ = refused.stream.write_all(&out);
        assert!(refused.receive().is_none(), "refused");
    }
}

#[test]
fn the_listener_is_off_by_default_and_refuses_bad_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), 1);
    assert_eq!(server.iso_addr, None);
    drop(server);
    let config = dir.path().join("bad.toml");
    for table in [
        // TLS is required outside the test mode.
        "[iso8583]\nlisten = \"127.0.0.1:0\"\n",
        // The test mode is loopback only.
        "[iso8583]\nlisten = \"0.0.0.0:0\"\nplain_tcp_store_hq = 1\n",
        // Limits have ceilings.
        "[iso8583]\nmax_message_bytes = 70000\n",
        "[iso8583]\nmax_certs_per_principal = 0\n",
    ] {
        std::fs::write(
            &config,
            format!("data_dir = \"{}\"\n{table}", dir.path().join("d").display()),
        )
        .expect("config");
        let output = std::process::Command::new(common::kessai_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{table} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("iso8583"), "{stderr}");
    }
}

#[test]
fn codec_frames_cut_from_a_stream_of_several_messages() {
    // Two messages in one write, as a switch pipelines them.
    let mut out = Vec::new();
    let mut echo = Message::new(*b"0800");
    echo.set(11, "000001").set(70, "301");
    echo.encode(&mut out, 4096).expect("legal");
    echo.set(11, "000002");
    echo.encode(&mut out, 4096).expect("legal");
    let (first, used) = codec::cut(&out, 4096).expect("legal").expect("whole");
    assert_eq!(
        Message::decode(first).expect("decodes").get(11),
        Some("000001")
    );
    let (second, _) = codec::cut(&out[used..], 4096)
        .expect("legal")
        .expect("whole");
    assert_eq!(
        Message::decode(second).expect("decodes").get(11),
        Some("000002")
    );
}

/// A PIN of `digits` digits whose last digit is its Luhn check digit.
fn luhn_pin(payload: &str) -> String {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    format!("{payload}{}", (10 - sum % 10) % 10)
}

#[test]
fn one_faulty_terminal_is_locked_out_alone_until_the_hq_ceiling() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = plain_iso_with(
        dir.path(),
        ServerOptions {
            limits: vec!["pin_failures_max = 10".into()],
            ..ServerOptions::default()
        },
        &["pin_failures_per_terminal_max = 3"],
    );
    let (principals, pins) = setup(&rt, &server, 2);
    let mut iso = Iso::connect(server.iso_addr.expect("iso listener"));
    iso.sign_on();
    let unknown = |n: u32| luhn_pin(&format!("9{n:014}"));
    let from = |iso: &mut Iso<TcpStream>, terminal: &str, pin: &str, rrn: &str| {
        let mut sale = iso.sale(b"0200", pin, FACE, STORE, rrn);
        sale.set(41, terminal);
        code(&iso.call(&sale)).to_string()
    };
    // Terminal A garbles three PINs: it alone is locked out.
    for n in 0..3 {
        assert_eq!(
            from(&mut iso, "TERMAAAA", &unknown(n), "RRN000000001"),
            "14"
        );
    }
    assert_eq!(from(&mut iso, "TERMAAAA", &pins[0], "RRN000000001"), "75");
    assert_eq!(from(&mut iso, "TERMBBBB", &pins[0], "RRN000000001"), "00");
    // More faulty terminals: the HQ-wide ceiling (10) still holds them all.
    let mut n = 3;
    for terminal in ["TERMCCCC", "TERMDDDD", "TERMEEEE"] {
        for _ in 0..3 {
            let got = from(&mut iso, terminal, &unknown(n), "RRN000000002");
            assert!(got == "14" || got == "75", "{got}");
            n += 1;
        }
    }
    assert_eq!(
        from(&mut iso, "TERMFFFF", &unknown(n), "RRN000000002"),
        "75"
    );
    assert_eq!(from(&mut iso, "TERMBBBB", &pins[1], "RRN000000003"), "75");
    assert_eq!(audit_and_store_owed(&rt, &principals), FACE);
}

#[test]
fn responses_are_counted_by_mti_and_response_code() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics_addr = common::free_local_addr();
    let server = plain_iso_with(
        dir.path(),
        ServerOptions {
            metrics_listen: Some(metrics_addr),
            ..ServerOptions::default()
        },
        &[],
    );
    let (_principals, pins) = setup(&rt, &server, 1);
    let mut iso = Iso::connect(server.iso_addr.expect("iso listener"));
    iso.sign_on();
    assert_eq!(
        code(&iso.activate(&pins[0], FACE, STORE, "RRN000000001")),
        "00"
    );
    assert_eq!(
        code(&iso.activate(&pins[0], FACE, STORE, "RRN000000002")),
        "94"
    );
    assert_eq!(code(&iso.balance(&pins[0])), "00");
    let samples = common::scrape(metrics_addr);
    let count = |mti: &str, code: &str| {
        samples
            .iter()
            .find(|(series, _)| {
                series.starts_with("kessai_iso8583_responses_total{")
                    && series.contains(&format!("mti=\"{mti}\""))
                    && series.contains(&format!("code=\"{code}\""))
            })
            .map_or(0.0, |(_, value)| *value)
    };
    assert_eq!(count("0810", "00"), 1.0);
    assert_eq!(count("0210", "00"), 1.0);
    assert_eq!(count("0210", "94"), 1.0);
    assert_eq!(count("0110", "00"), 1.0);
}

/// A switch that pipelines far past `max_inflight_per_connection` is held
/// back (the engine stops reading), never refused or dropped: every
/// message is answered, in whatever order.
#[test]
fn a_pipelining_switch_is_held_to_the_in_flight_limit() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = plain_iso_with(
        dir.path(),
        ServerOptions {
            limits: vec!["max_inflight_per_connection = 2".into()],
            ..ServerOptions::default()
        },
        &[],
    );
    const CARDS: usize = 60;
    let (principals, pins) = setup(&rt, &server, CARDS as u32);
    let mut iso = Iso::connect(server.iso_addr.expect("iso listener"));
    iso.sign_on();
    let mut burst = Vec::new();
    for (index, pin) in pins.iter().enumerate() {
        let sale = iso.sale(b"0200", pin, FACE, STORE, &format!("BURST{index:07}"));
        sale.encode(&mut burst, 4096).expect("legal");
    }
    iso.send_raw(&burst);
    let mut approved = std::collections::BTreeSet::new();
    for _ in 0..CARDS {
        let reply = iso.receive().expect("every message is answered");
        assert_eq!(code(&reply), "00");
        approved.insert(reply.get(37).expect("RRN").to_string());
    }
    assert_eq!(approved.len(), CARDS, "one answer per sale");
    assert_eq!(audit_and_store_owed(&rt, &principals), CARDS as u64 * FACE);
}
