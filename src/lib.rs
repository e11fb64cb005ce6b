//! kessai (決済, "settlement"): an actor-based settlement engine for prepaid
//! PIN cards.
//!
//! A card is worthless until a store's POS sells it and the store's
//! headquarters tells the center ([`card`]); then merchants debit it by PIN,
//! alone or combined with other cards, and the center keeps the books
//! ([`ledger`]). The architecture, from the socket inwards:
//!
//! * [`protocol`]: frames and messages on the wire.
//! * [`gateway`]: TCP connections; validation; admission control.
//! * [`router`]: an actor fanning commands out to shards.
//! * [`shard`]: card-shard actors owning card state, with group commit.
//! * [`twopc`]: two-phase commit for payments spanning shards, recovery,
//!   crash points.
//! * [`storage`]: RocksDB and the record layouts; [`load`]: start-up.
//! * [`ledger`]: books, reports, the conservation audit.
//! * [`client`]: the Rust client; [`cli`]: the `kessai` command.
//! * [`telemetry`]: metrics for Prometheus.

pub mod card;
pub mod cli;
pub mod client;
pub mod config;
pub mod encoding;
pub mod engine;
pub mod gateway;
pub mod idempotency;
pub mod ids;
pub mod ledger;
pub mod load;
pub mod pin;
pub mod protocol;
pub mod router;
pub mod shard;
pub mod storage;
pub mod telemetry;
pub mod twopc;
