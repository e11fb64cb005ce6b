//! What flows back to a client connection: replies tagged with the
//! correlation ids of their requests.
//!
//! A leaf that depends only on [`crate::protocol`]: shards hand their
//! writers' replies to a [`ReplyTx`] without knowing what a connection is,
//! and since only protocol responses fit in a [`Reply`], no internal message
//! (a two-phase vote, a ledger snapshot) can type-check its way to a socket.

use crate::protocol::{ErrorResponse, Response};

/// What a connection's writer receives.
#[derive(Debug)]
pub enum Reply {
    /// Answers to several requests at once (one shard batch).
    Many(Vec<(u64, Response)>),
    /// One answer.
    One(u64, Response),
    /// A protocol violation: write this error last, then close.
    Fatal(u64, ErrorResponse),
}

/// The sending side of a connection's reply queue.
///
/// The queue is unbounded as a channel but bounded in fact: every reply
/// answers a request the connection admitted under its in-flight permits,
/// so it never holds more than `max_inflight_per_connection` replies.
pub type ReplyTx = tokio::sync::mpsc::UnboundedSender<Reply>;
pub type ReplyRx = tokio::sync::mpsc::UnboundedReceiver<Reply>;

/// Sends a reply; a connection that has gone away just drops it (the state
/// change, if any, is durable either way, and a retry finds its outcome).
pub fn send(tx: &ReplyTx, reply: Reply) {
    let _ = tx.send(reply);
}
