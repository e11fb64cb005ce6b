//! The TCP gateway: accepts connections from merchant gateways and store
//! headquarters, cuts frames, validates requests, hands them to the router
//! in batches, and writes replies back as they become ready (in any order).
//!
//! * [`server`]: the accept loop and the connection limit.
//! * [`connection`]: one connection's reader and writer halves.
//! * [`command`]: turning a decoded request into a validated command.

pub mod command;
pub mod connection;
pub mod server;

use crate::protocol::{ErrorResponse, Response};
use crate::shard::op::Results;

/// What flows to a connection's writer.
#[derive(Debug)]
pub enum ConnMsg {
    /// Results of one shard batch, tagged with correlation ids.
    Outcomes(Results),
    /// One response from a gathering future or the reader itself.
    Response(u64, Response),
    /// A protocol violation: write this error, then close.
    Fatal(u64, ErrorResponse),
}

/// The sending side of a connection's reply queue.
///
/// The queue is unbounded as a channel but bounded in fact: every message
/// answers requests the reader admitted under its in-flight permits (see
/// [`connection`]), so it never holds more than
/// `max_inflight_per_connection` replies.
pub type ConnTx = tokio::sync::mpsc::UnboundedSender<ConnMsg>;
