//! What a shard takes: client work answered straight to a connection
//! ([`ClientWork`]), and every other operation as data ([`ShardOp`]),
//! answered with a [`ShardAnswer`] once the change behind it is durable.
//! Every message holds a mailbox slot (see [`super::Shards`]) that is
//! given back when the shard takes client work up, or has handled any other
//! message.

use crate::auth::Principal;
use crate::ids::{CardList, PaymentId, StoreId};
use crate::order::OrderId;
use crate::pin::PinKey;
use crate::protocol::Response;
use crate::reply::{ReplyTx, Tag};
use crate::state_machine::{ShardAnswer, ShardOp};
use actix::Message;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// A place in a shard's bounded mailbox, held by a queued message.
pub type MailboxSlot = OwnedSemaphorePermit;

/// A client request served by one shard, its answer a wire response.
#[derive(Debug)]
pub enum ClientOp {
    /// A payment whose cards all live on this shard: decided and applied in
    /// one local atomic step, no two-phase commit.
    Pay {
        payment: PaymentId,
        amount_minor: u64,
        cards: CardList,
        order_id: Option<OrderId>,
    },
    Balance {
        /// The merchant or store HQ asking (its PIN failures are counted).
        principal: u32,
        key: PinKey,
        /// Set when a store HQ asks: it may see only cards its stores sold.
        hq: Option<Arc<Principal>>,
    },
    ReverseActivation {
        /// The store HQ asking (its PIN failures are counted).
        principal: u32,
        store_id: StoreId,
        pos_ref: u64,
        key: PinKey,
        /// The amount the till reversed, when the protocol carries one
        /// (ISO 8583 DE 4): it must be the card's face value.
        face_value_minor: Option<u64>,
    },
    /// PINs the gateway found bad (check digit, syntax): `count` failures
    /// of `principal`, written before `refusal` is answered (or
    /// `locked_out`, if they lock it out).
    PinFailures {
        principal: u32,
        count: u32,
        refusal: Response,
    },
}

/// Client requests from one connection read, answered straight to the
/// connection once durable, each under its request's tag.
pub struct ClientWork {
    pub reply: ReplyTx,
    pub ops: Vec<(Tag, ClientOp)>,
    pub _slot: MailboxSlot,
}

impl Message for ClientWork {
    type Result = ();
}

/// An operation with where its answer goes.
pub struct Ask {
    pub op: ShardOp,
    pub done: oneshot::Sender<ShardAnswer>,
    pub _slot: MailboxSlot,
}

impl Message for Ask {
    type Result = ();
}
