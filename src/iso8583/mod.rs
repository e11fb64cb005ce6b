//! ISO 8583:1987 for store HQ switches: the same activations, reversals
//! and balance inquiries as the binary protocol, in the messages POS
//! networks speak (`docs/ISO8583.md` is the reference).
//!
//! Arrows run one way: server → connection → request → codec, codes.
//! The listener sits above the gateway and shares its context (connection
//! slots, in-flight budgets, the PIN guard, the router), so an ISO 8583
//! request ends in the same shard operations as a binary one.
//!
//! * [`codec`]: framing, MTI, bitmaps, the field table; no I/O.
//! * [`request`]: a message's fields checked into a request, and the
//!   response it gets (echoed fields, DE 38, DE 54).
//! * [`codes`]: DE 39, kessai's outcomes as response codes.
//! * [`connection`]: one store HQ's connection (sessions, budgets,
//!   deadlines), reader and writer.
//! * [`server`]: the accept loop: slots, then who the connection acts as.
//! * [`tls`]: mutual TLS, client certificates pinned by fingerprint.
//! * [`terminals`]: the PIN-failure lockout per terminal, under the HQ's.

pub mod codec;
pub mod codes;
pub(crate) mod connection;
pub mod request;
pub(crate) mod server;
pub mod terminals;
pub(crate) mod tls;
