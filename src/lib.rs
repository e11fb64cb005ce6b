//! kessai (決済, "settlement"): an actor-based settlement engine for prepaid
//! PIN cards.
//!
//! A card is worthless until a store's POS sells it and the store's
//! headquarters tells the center ([`card`]); then merchants debit it by PIN,
//! alone or combined with other cards, and the center keeps the books
//! ([`ledger`]). The data flows one way, client → gateway → router → shard
//! → storage, and so do the imports (`docs/DESIGN.md` has the map):
//!
//! * [`protocol`]: frames and messages on the wire.
//! * [`gateway`]: TCP connections; validation; admission control.
//! * [`iso8583`]: the ISO 8583 listener for store HQ switches, beside the
//!   gateway and sharing its limits.
//! * [`http`]: the HTTP/JSON API for merchant gateways, beside the gateway
//!   and sharing its limits.
//! * [`router`]: fans one connection's commands out to the shards.
//! * [`operation`]: the operations that take several steps over several
//!   shards (a payment across shards, an authorization), each a pure step
//!   machine, and the one driver that runs them; captures, voids and
//!   refunds; the claims and replays in front of them.
//! * [`twopc`]: two-phase commit, pure: the decision, recovery from the
//!   durable records, crash points.
//! * [`shard`]: the shard actors and their writer threads (group commit),
//!   reached through [`shard::Shards`].
//! * [`state_machine`]: the rules of one shard, pure: prefetch, then apply.
//! * [`idempotency`]: claims and replays of payments by request id;
//!   [`order`]: the merchant's order ids, mapped to request ids.
//! * [`auth`]: principals, roles, the handshake, the PIN-guessing guard.
//! * [`ledger`]: books, reports, the conservation audit; [`settlement`]:
//!   which payments and refunds a merchant's payout closes, and its sums.
//! * [`command_log`]: the durable order of every shard's changes (the
//!   write-ahead log: local and hash-chained, or on a NATS JetStream
//!   stream), checkpoints into RocksDB, recovery.
//! * [`storage`]: RocksDB behind [`storage::Store`], and the record layouts.
//! * [`reply`]: what shards hand back to connections (protocol only).
//! * [`card`], [`pin`], [`ids`], [`clock`]: the leaves: one card's rules,
//!   PINs and their keyed hash, identifiers, the engine's clock.
//! * [`load`]: start-up; [`engine`]: wiring; [`config`]: every limit.
//! * [`client`]: the Rust client; [`cli`]: the `kessai` command.
//! * [`telemetry`]: metrics for Prometheus.

pub mod auth;
pub mod card;
pub mod cli;
pub mod client;
pub mod clock;
pub mod command_log;
pub mod config;
mod encoding;
pub mod engine;
mod gateway;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod iso8583;
pub mod ledger;
pub mod load;
pub mod operation;
pub mod order;
pub mod pin;
pub mod protocol;
mod reply;
mod router;
pub mod settlement;
pub mod shard;
pub mod state_machine;
pub mod storage;
mod telemetry;
pub mod twopc;
