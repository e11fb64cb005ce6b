//! The TCP gateway: accepts connections from merchant gateways and store
//! headquarters, cuts frames, validates requests, hands them to the router
//! in batches, and writes replies back as they become ready (in any order).
//!
//! * [`server`]: the accept loop and the connection limit.
//! * [`connection`]: one connection's reader and writer halves.
//! * [`validate`]: turning a decoded request into a validated command, one
//!   file per request.

pub(crate) mod connection;
pub(crate) mod server;
mod validate;
