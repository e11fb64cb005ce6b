//! What flows back to a client connection: replies tagged with the
//! requests they answer.
//!
//! A leaf that depends only on [`crate::protocol`]: shards hand their
//! writers' replies to a [`ReplyTx`] without knowing what a connection is,
//! and since only protocol responses fit in a [`Reply`], no internal message
//! (a two-phase vote, a ledger snapshot) can type-check its way to a socket.

use crate::protocol::{ErrorResponse, PayResult, Response};
use tokio::sync::OwnedSemaphorePermit;

/// What a request carries through the engine and back: its correlation id,
/// what it reserved of its connection's in-flight byte budget (given back
/// when its reply is written), and its shares of its principal's and the
/// engine's budgets, which go back whenever the tag is dropped, so a reply
/// that never reaches its connection cannot leak them.
#[derive(Debug)]
pub struct Tag {
    pub correlation_id: u64,
    pub bytes: u32,
    pub engine: Option<OwnedSemaphorePermit>,
    /// Its share of its principal's budget, given back the same way.
    pub principal: Option<OwnedSemaphorePermit>,
    /// Set for a payment inside a batch frame: its reply is one result of
    /// the batch's reply. Such a tag reserves nothing; the batch's own tag
    /// holds the budgets.
    pub item: Option<Item>,
    /// Set when the request named its payment by the merchant's order id:
    /// the answer goes back under the order kind ([`Response::for_order`]).
    pub order: bool,
}

/// Where a payment sits in a batch frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The batch, numbered by its connection.
    pub batch: u32,
    pub index: u32,
}

/// What a connection's writer receives.
#[derive(Debug)]
pub enum Reply {
    /// Answers to several requests at once (one shard batch).
    Many(Vec<(Tag, Response)>),
    /// One answer.
    One(Tag, Response),
    /// A batch frame was admitted under `Tag`; its payments' replies follow
    /// with tags naming batch number `u32`. The results validation already
    /// gave are filled in.
    Batch(Tag, u32, Vec<Option<PayResult>>),
    /// A protocol violation or a timeout: write this error last, then
    /// close.
    Fatal(u64, ErrorResponse),
}

/// The sending side of a connection's reply queue.
///
/// The queue is unbounded as a channel but bounded in fact: every reply
/// answers a request the connection admitted under its in-flight budget.
pub type ReplyTx = tokio::sync::mpsc::UnboundedSender<Reply>;
pub type ReplyRx = tokio::sync::mpsc::UnboundedReceiver<Reply>;

/// Sends a reply; a connection that has gone away just drops it (the state
/// change, if any, is durable either way, and a retry finds its outcome).
pub fn send(tx: &ReplyTx, reply: Reply) {
    let _ = tx.send(reply);
}
