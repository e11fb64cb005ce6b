//! The router: receives validated commands from the gateway, one message per
//! connection read, and fans them out to the shards that own their cards.
//!
//! Single-shard work (a payment whose cards share a shard, a balance
//! inquiry) is grouped into one [`ShardBatch`] per shard per incoming batch,
//! and its results go from the shard straight back to the connection. Work
//! that needs answers from several shards (an activation batch, issuing,
//! reports, and payments across shards, which need two-phase commit) runs
//! as a future on the router's arbiter that gathers the shards' results and
//! then answers the connection.
//!
//! Queues past the router are bounded by admission, not by mailbox size:
//! the gateway admits at most `max_inflight_per_connection` requests per
//! connection and at most `max_connections` connections, and every queued
//! shard message belongs to an admitted request.

use crate::config::Limits;
use crate::gateway::{ConnMsg, ConnTx};
use crate::idempotency::Claims;
use crate::ids::{PaymentId, StoreId};
use crate::ledger::{self, ShardLedger};
use crate::pin::{Pin, PinHasher, PinKey};
use crate::protocol::{
    ActivateResponse, ActivationResult, ErrorCode, IssueResponse, Response, StatsResponse,
};
use crate::shard::op::{CardRef, Op, Origin, Outcome, Results};
use crate::shard::{Shard, ShardBatch};
use crate::storage::Storage;
use crate::twopc;
use actix::prelude::*;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Rounds of fresh PINs an issue request tries when a generated PIN is
/// already taken. Collisions are rare (1 in 10^15 per PIN at 16 digits);
/// running out means the PIN space is nearly full.
const ISSUE_ROUNDS_MAX: usize = 8;

/// Messages the router queues before the gateway waits.
pub const ROUTER_MAILBOX_CAPACITY: usize = 256;

/// A validated request, PINs already turned into keys.
#[derive(Debug)]
pub enum Command {
    Pay {
        payment: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
    },
    Balance {
        card: CardRef,
    },
    /// `None` marks a PIN that failed validation (answered `InvalidPin` in
    /// its place, without failing the rest of the batch).
    Activate {
        store_id: StoreId,
        pos_ref: u64,
        cards: Vec<Option<PinKey>>,
    },
    Issue {
        count: usize,
        face_value_minor: u64,
    },
    Report,
    Audit,
    Stats,
}

/// What the router and its gathering futures share: the shard addresses
/// and the engine-wide services.
pub struct Fabric {
    pub shards: Vec<Addr<Shard>>,
    pub storage: Arc<Storage>,
    pub claims: Arc<Claims>,
    pub hasher: PinHasher,
    pub limits: Limits,
    pub pin_digits: usize,
}

/// The shard is gone: only during shutdown.
#[derive(Debug)]
pub struct ShardGone;

impl Fabric {
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shard_of(&self, key: &PinKey) -> usize {
        key.shard(self.shards.len())
    }

    /// Sends `ops` to one shard now; the receiver yields the results once
    /// they are durable.
    pub fn send(&self, shard: usize, ops: Vec<(u64, Op)>) -> oneshot::Receiver<Results> {
        let (tx, rx) = oneshot::channel();
        self.shards[shard].do_send(ShardBatch {
            origin: Origin::Waiter(tx),
            ops,
        });
        rx
    }

    /// Sends `ops` to one shard and waits until they are durable and
    /// answered.
    pub async fn call(&self, shard: usize, ops: Vec<(u64, Op)>) -> Result<Results, ShardGone> {
        self.send(shard, ops).await.map_err(|_| ShardGone)
    }

    /// Sends one batch per shard (skipping empty ones), all at once, and
    /// gathers every result; each keeps the tag it was sent with.
    pub async fn call_each(&self, per_shard: Vec<Vec<(u64, Op)>>) -> Result<Results, ShardGone> {
        let receivers: Vec<_> = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, ops)| !ops.is_empty())
            .map(|(shard, ops)| self.send(shard, ops))
            .collect();
        let mut all = Vec::new();
        for receiver in receivers {
            all.extend(receiver.await.map_err(|_| ShardGone)?);
        }
        Ok(all)
    }

    fn empty_per_shard(&self) -> Vec<Vec<(u64, Op)>> {
        (0..self.shards.len()).map(|_| Vec::new()).collect()
    }

    /// Every shard's ledger snapshot.
    pub async fn ledgers(&self) -> Result<Vec<ShardLedger>, ShardGone> {
        let per_shard = (0..self.shards.len())
            .map(|_| vec![(0, Op::Ledger)])
            .collect();
        let mut ledgers = Vec::with_capacity(self.shards.len());
        for (_, outcome) in self.call_each(per_shard).await? {
            if let Outcome::Ledger(ledger) = outcome {
                ledgers.push(*ledger);
            }
        }
        Ok(ledgers)
    }
}

pub struct Router {
    fabric: Arc<Fabric>,
}

impl Router {
    pub fn new(fabric: Arc<Fabric>) -> Router {
        Router { fabric }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROUTER_MAILBOX_CAPACITY);
    }
}

/// All commands one connection read delivered.
pub struct RouteBatch {
    pub conn: ConnTx,
    pub commands: Vec<(u64, Command)>,
}

impl Message for RouteBatch {
    type Result = ();
}

impl Handler<RouteBatch> for Router {
    type Result = ();

    fn handle(&mut self, batch: RouteBatch, _ctx: &mut Context<Self>) {
        let fabric = &self.fabric;
        let mut per_shard = fabric.empty_per_shard();
        for (correlation_id, command) in batch.commands {
            match command {
                Command::Pay {
                    payment,
                    amount_minor,
                    cards,
                } => {
                    let first_shard = fabric.shard_of(&cards[0].key);
                    if cards.iter().all(|c| fabric.shard_of(&c.key) == first_shard) {
                        per_shard[first_shard].push((
                            correlation_id,
                            Op::Pay {
                                payment,
                                amount_minor,
                                cards,
                            },
                        ));
                    } else {
                        let fabric = fabric.clone();
                        let conn = batch.conn.clone();
                        actix::spawn(async move {
                            let response =
                                twopc::coordinator::pay(&fabric, payment, amount_minor, cards)
                                    .await;
                            let _ = conn.send(ConnMsg::Response(correlation_id, response));
                        });
                    }
                }
                Command::Balance { card } => {
                    per_shard[fabric.shard_of(&card.key)]
                        .push((correlation_id, Op::Balance { key: card.key }));
                }
                other => {
                    let fabric = fabric.clone();
                    let conn = batch.conn.clone();
                    actix::spawn(async move {
                        let response = gather(&fabric, other).await.unwrap_or_else(|ShardGone| {
                            Response::error(ErrorCode::Internal, "engine is shutting down")
                        });
                        let _ = conn.send(ConnMsg::Response(correlation_id, response));
                    });
                }
            }
        }
        for (shard, ops) in per_shard.into_iter().enumerate() {
            if !ops.is_empty() {
                fabric.shards[shard].do_send(ShardBatch {
                    origin: Origin::Connection(batch.conn.clone()),
                    ops,
                });
            }
        }
    }
}

/// Commands answered by gathering from several shards.
async fn gather(fabric: &Fabric, command: Command) -> Result<Response, ShardGone> {
    match command {
        Command::Activate {
            store_id,
            pos_ref,
            cards,
        } => activate(fabric, store_id, pos_ref, cards).await,
        Command::Issue {
            count,
            face_value_minor,
        } => issue(fabric, count, face_value_minor).await,
        Command::Report => Ok(Response::Report(ledger::report(&fabric.ledgers().await?))),
        Command::Audit => {
            let ledgers = fabric.ledgers().await?;
            Ok(Response::Audit(ledger::audit(&ledgers, |payment| {
                fabric.claims.is_in_flight(payment)
            })))
        }
        Command::Stats => {
            let per_shard = (0..fabric.shard_count())
                .map(|_| vec![(0, Op::Stats)])
                .collect();
            let mut shards = Vec::new();
            for (_, outcome) in fabric.call_each(per_shard).await? {
                if let Outcome::Stats(stats) = outcome {
                    shards.push(stats);
                }
            }
            shards.sort_by_key(|s| s.shard);
            Ok(Response::Stats(StatsResponse { shards }))
        }
        Command::Pay { .. } | Command::Balance { .. } => {
            unreachable!("single-shard commands are routed, not gathered")
        }
    }
}

async fn activate(
    fabric: &Fabric,
    store_id: StoreId,
    pos_ref: u64,
    cards: Vec<Option<PinKey>>,
) -> Result<Response, ShardGone> {
    let mut results = vec![ActivationResult::InvalidPin; cards.len()];
    let mut per_shard = fabric.empty_per_shard();
    for (index, key) in cards.iter().enumerate() {
        if let Some(key) = key {
            per_shard[fabric.shard_of(key)].push((
                index as u64,
                Op::Activate {
                    key: *key,
                    store_id,
                    pos_ref,
                },
            ));
        }
    }
    for (index, outcome) in fabric.call_each(per_shard).await? {
        if let Outcome::Activation(result) = outcome {
            results[index as usize] = result;
        }
    }
    Ok(Response::Activated(ActivateResponse { results }))
}

/// Makes `count` new cards. PINs are drawn from the OS-seeded CSPRNG; a
/// drawn PIN whose key already exists is replaced by a fresh draw.
async fn issue(
    fabric: &Fabric,
    count: usize,
    face_value_minor: u64,
) -> Result<Response, ShardGone> {
    let mut pins: Vec<String> = Vec::with_capacity(count);
    for _ in 0..ISSUE_ROUNDS_MAX {
        let wanted = count - pins.len();
        if wanted == 0 {
            break;
        }
        let drawn: Vec<Pin> = {
            let mut rng = rand::rng();
            (0..wanted)
                .map(|_| Pin::generate(&mut rng, fabric.pin_digits))
                .collect()
        };
        let mut per_shard = fabric.empty_per_shard();
        for (index, pin) in drawn.iter().enumerate() {
            let key = fabric.hasher.key(pin);
            per_shard[fabric.shard_of(&key)].push((
                index as u64,
                Op::Insert {
                    key,
                    face_value_minor,
                },
            ));
        }
        for (index, outcome) in fabric.call_each(per_shard).await? {
            if let Outcome::Inserted(true) = outcome {
                pins.push(drawn[index as usize].expose().to_string());
            }
        }
    }
    if pins.len() < count {
        // The cards that were made are real and returned; say why not all.
        tracing::warn!(made = pins.len(), count, "PIN space nearly exhausted");
    }
    Ok(Response::Issued(IssueResponse {
        face_value_minor,
        pins,
    }))
}
