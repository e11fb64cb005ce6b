//! Before the runs: the principals the harness acts as, and the cards it
//! pays with, issued and activated through the engine's own API.

use crate::fail;
use crate::progress::Progress;
use kessai::auth::Key;
use kessai::client::Client;
use kessai::config::{Config, LogBackend, LogJetStream};
use kessai::engine::EngineHandle;
use kessai::protocol::Role;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An engine the harness started, in process, on a fresh temp data dir,
/// which goes when the engine does.
pub struct Spawned {
    pub engine: EngineHandle,
    dir: PathBuf,
    /// The JetStream log's settings, when the engine runs on one: its
    /// stream goes with the data dir.
    jetstream: Option<LogJetStream>,
}

impl Spawned {
    /// Stops the engine (returning once its database has closed), then
    /// removes its data dir (and its JetStream stream).
    pub fn stop(self) {
        let Spawned {
            engine,
            dir,
            jetstream,
        } = self;
        drop(engine);
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            eprintln!("kessai-load: could not remove {}: {error}", dir.display());
        }
        if let Some(settings) = jetstream
            && let Err(error) = delete_stream(&settings)
        {
            eprintln!(
                "kessai-load: could not delete the stream {} at {}: {error}",
                settings.stream, settings.url
            );
        }
    }
}

/// Runs a spawned engine's command log on the JetStream server at `url`
/// (`--jetstream-url`), on a stream of its own: a fresh data dir must
/// not replay another run's records.
pub fn use_jetstream(config: &mut Config, url: &str, name: &str) {
    config.log.backend = LogBackend::Jetstream;
    config.log.jetstream.url = url.to_string();
    config.log.jetstream.stream = format!("KESSAI_LOAD_{name}_{}", std::process::id());
}

fn delete_stream(settings: &LogJetStream) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = async_nats::connect(settings.url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        async_nats::jetstream::new(client)
            .delete_stream(&settings.stream)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

/// Starts an engine of `shards` shards listening on loopback, data under a
/// temp dir named after `name`, admitting `connections` connections from
/// this host (every harness connection comes from 127.0.0.1: past the
/// engine's limit per peer the extra ones would be refused); `configure`
/// sets the rest.
pub fn spawn(
    name: &str,
    shards: usize,
    connections: usize,
    configure: impl FnOnce(&mut Config),
) -> Spawned {
    let dir = std::env::temp_dir().join(format!("kessai-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("literal"),
        data_dir: dir.join("data"),
        shards,
        ..Config::default()
    };
    let limits = &mut config.limits;
    limits.max_connections_per_peer = limits.max_connections_per_peer.max(connections);
    limits.max_connections = limits.max_connections.max(connections);
    configure(&mut config);
    let jetstream =
        (config.log.backend == LogBackend::Jetstream).then(|| config.log.jetstream.clone());
    let engine =
        EngineHandle::start(config).unwrap_or_else(|e| fail(format!("cannot start engine: {e}")));
    Spawned {
        engine,
        dir,
        jetstream,
    }
}

/// The principals a run acts as.
pub struct Actors {
    pub operator: Arc<Client>,
    /// For a fresh operator connection after a run that outlasted the
    /// engine's idle deadline.
    pub operator_key: Key,
    pub store_hq: Key,
    /// The store every card of the run is sold at (the store HQ's).
    pub store: u32,
    pub merchant: Key,
    /// `--flood`: a second merchant, the one that floods.
    pub flooder: Option<Key>,
}

/// Connects as the operator and registers a store HQ and a merchant (and,
/// for a flood, a second merchant) under the next free ids, the HQ with the
/// next free store (a store belongs to one HQ, so runs against one engine
/// each take their own).
pub async fn actors(addr: SocketAddr, operator_key: &Path, flood: bool) -> Actors {
    let key = Key::read(operator_key).unwrap_or_else(|e| fail(&e));
    let operator = Client::connect_as(addr, &key)
        .await
        .unwrap_or_else(|e| fail(format!("connect {addr} as the operator: {e}")));
    let taken = operator
        .principal_list()
        .await
        .unwrap_or_else(|e| fail(format!("list principals: {e}")));
    let next = taken.iter().map(|p| p.id).max().map_or(0, |id| id + 1);
    let held = taken.iter().flat_map(|p| p.stores.iter().copied()).max();
    let store = held.map_or(1, |store| store.saturating_add(1));
    let (store_hq, merchant) = (Key::generate(next), Key::generate(next + 1));
    let flooder = flood.then(|| Key::generate(next + 2));
    let mut principals = vec![
        (&store_hq, Role::StoreHq, vec![store]),
        (&merchant, Role::Merchant, vec![]),
    ];
    principals.extend(flooder.iter().map(|key| (key, Role::Merchant, vec![])));
    for (key, role, stores) in principals {
        operator
            .principal_add(key, role, &stores)
            .await
            .unwrap_or_else(|e| fail(format!("add a {}: {e}", role.name())));
    }
    Actors {
        operator: Arc::new(operator),
        operator_key: key,
        store_hq,
        store,
        merchant,
        flooder,
    }
}

/// Issues and activates `cards` cards of `face_value_minor` each; returns
/// their PINs, shuffled.
pub async fn prepare_cards(
    actors: &Actors,
    addr: SocketAddr,
    cards: u32,
    face_value_minor: u64,
    progress: Progress,
) -> Vec<String> {
    let store = Client::connect_as(addr, &actors.store_hq)
        .await
        .unwrap_or_else(|e| fail(format!("connect as the store HQ: {e}")));
    let bar = progress.setup(u64::from(cards));
    let mut pins = Vec::with_capacity(cards as usize);
    while pins.len() < cards as usize {
        let wanted = (cards as usize - pins.len()).min(4096) as u32;
        let issued = actors
            .operator
            .issue(wanted, face_value_minor)
            .await
            .unwrap_or_else(|e| fail(format!("issue: {e}")));
        store
            .activate(actors.store, 0, &issued.pins)
            .await
            .unwrap_or_else(|e| fail(format!("activate: {e}")));
        pins.extend(issued.pins);
        bar.set_position(pins.len() as u64);
    }
    bar.finish_and_clear();
    // A two-card payment pairs neighbours in this list. Shuffle it, so that
    // whether neighbours share a shard does not depend on the order the
    // engine lists new PINs in (engines before this harness listed them
    // grouped by shard, which made nearly every "two-card" payment local).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..pins.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        pins.swap(i, (state % (i as u64 + 1)) as usize);
    }
    pins
}
