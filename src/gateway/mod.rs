//! The TCP gateway: accepts connections from merchant gateways and store
//! headquarters, cuts frames, validates requests, hands them to the router
//! in batches, and writes replies back as they become ready (in any order).
//!
//! * [`server`]: the accept loop.
//! * [`slots`]: how many connections, and who may hold them.
//! * [`memory`]: giving memory back once a burst is over.
//! * [`connection`]: one connection's reader and writer halves.
//! * [`session`]: the handshake, then who the connection acts as.
//! * [`tls`]: TLS, when configured.
//! * [`validate`]: turning a decoded request into a validated command, one
//!   file per request.

pub(crate) mod connection;
pub(crate) mod memory;
pub(crate) mod server;
mod session;
pub(crate) mod slots;
pub(crate) mod tls;
pub(crate) mod validate;
