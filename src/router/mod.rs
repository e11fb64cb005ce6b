//! The router: takes the validated commands of one connection read and
//! fans them out to the shards that own their cards.
//!
//! It runs in the connection's own task, on the connection's arbiter: no
//! extra actor hop. Single-shard work (a payment whose cards share a shard,
//! a balance inquiry) is grouped into one message per shard per read, and
//! its answers go from the shard straight back to the connection. Work that
//! needs several shards (payments across shards, which need two-phase
//! commit; activation batches; issuing; reports) runs as a future beside
//! the connection that gathers the shards' answers, then replies.
//!
//! * [`activate`], [`issue`], [`admin`]: the gathering commands;
//!   [`principal`]: the operator's management of principals.
//!
//! Queues past the router are bounded: each shard's mailbox holds at most
//! `shard_mailbox_capacity` messages (a full one makes the connection wait,
//! and so stop reading), and every gathering future answers a request the
//! connection admitted under its in-flight limit.

mod activate;
mod admin;
mod issue;
mod principal;

use crate::auth::Registry;
use crate::idempotency::Claims;
use crate::ids::{CardRef, PaymentId, ShardId, StoreId};
use crate::pin::{PinHasher, PinKey};
use crate::protocol::{ErrorCode, PrincipalAddRequest, PrincipalRotateRequest, Response};
use crate::reply::{self, Reply, ReplyTx};
use crate::shard::{ClientOp, ShardGone, Shards};
use crate::twopc::Coordinator;
use std::sync::Arc;

/// A validated request, PINs already turned into keys.
#[derive(Debug)]
pub enum Command {
    Pay {
        payment: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
    },
    Balance {
        /// The merchant asking (its PIN failures are counted).
        principal: u32,
        card: CardRef,
    },
    /// `None` marks a PIN that failed validation (answered `InvalidPin` in
    /// its place, without failing the rest of the batch).
    Activate {
        /// The store HQ reporting the sale.
        principal: u32,
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
    PrincipalAdd(PrincipalAddRequest),
    PrincipalList,
    PrincipalRevoke {
        id: u32,
    },
    PrincipalRotate(PrincipalRotateRequest),
}

/// What the router reaches: the shards and the engine-wide services.
pub struct Router {
    pub shards: Arc<Shards>,
    pub coordinator: Arc<Coordinator>,
    pub claims: Arc<Claims>,
    pub registry: Arc<Registry>,
    pub hasher: PinHasher,
    pub pin_digits: usize,
}

impl Router {
    /// Routes one read's commands; answers go to `reply`. Returns once
    /// every command is queued (waiting for room in full shard mailboxes),
    /// not once it is answered.
    pub async fn route(
        self: &Arc<Self>,
        reply: &ReplyTx,
        commands: Vec<(u64, Command)>,
    ) -> Result<(), ShardGone> {
        let mut per_shard: Vec<Vec<(u64, ClientOp)>> =
            (0..self.shards.count()).map(|_| Vec::new()).collect();
        for (correlation_id, command) in commands {
            match command {
                Command::Pay {
                    payment,
                    amount_minor,
                    cards,
                } => match self.single_shard(&cards) {
                    Some(shard) => per_shard[shard.index()].push((
                        correlation_id,
                        ClientOp::Pay {
                            payment,
                            amount_minor,
                            cards,
                        },
                    )),
                    None => {
                        let router = self.clone();
                        self.answer_later(reply, correlation_id, async move {
                            Ok(router.coordinator.pay(payment, amount_minor, cards).await)
                        });
                    }
                },
                Command::Balance { principal, card } => {
                    per_shard[self.shards.of(&card.key).index()].push((
                        correlation_id,
                        ClientOp::Balance {
                            principal,
                            key: card.key,
                        },
                    ))
                }
                other => {
                    let router = self.clone();
                    self.answer_later(
                        reply,
                        correlation_id,
                        async move { router.gather(other).await },
                    );
                }
            }
        }
        for (index, ops) in per_shard.into_iter().enumerate() {
            if !ops.is_empty() {
                let shard = ShardId::from_index(index);
                self.shards.client(shard, reply.clone(), ops).await?;
            }
        }
        Ok(())
    }

    /// The shard all of a payment's cards live on, if they share one.
    fn single_shard(&self, cards: &[CardRef]) -> Option<ShardId> {
        let first = self.shards.of(&cards.first()?.key);
        cards
            .iter()
            .all(|card| self.shards.of(&card.key) == first)
            .then_some(first)
    }

    /// Runs `work` beside the connection and sends its answer when done.
    fn answer_later(
        &self,
        reply: &ReplyTx,
        correlation_id: u64,
        work: impl Future<Output = Result<Response, ShardGone>> + 'static,
    ) {
        let reply = reply.clone();
        actix_rt::spawn(async move {
            let response = work.await.unwrap_or_else(|ShardGone| {
                Response::error(ErrorCode::Internal, "engine is shutting down")
            });
            reply::send(&reply, Reply::One(correlation_id, response));
        });
    }

    /// Commands answered by gathering from several shards.
    async fn gather(&self, command: Command) -> Result<Response, ShardGone> {
        match command {
            Command::Activate {
                principal,
                store_id,
                pos_ref,
                cards,
            } => activate::activate(&self.shards, principal, store_id, pos_ref, cards).await,
            Command::Issue {
                count,
                face_value_minor,
            } => {
                issue::issue(
                    &self.shards,
                    &self.hasher,
                    self.pin_digits,
                    count,
                    face_value_minor,
                )
                .await
            }
            Command::Report => admin::report(&self.shards).await,
            Command::Audit => admin::audit(&self.shards, &self.claims).await,
            Command::Stats => admin::stats(&self.shards).await,
            Command::PrincipalAdd(body) => Ok(principal::add(&self.registry, body)),
            Command::PrincipalList => Ok(principal::list(&self.registry)),
            Command::PrincipalRevoke { id } => Ok(principal::revoke(&self.registry, id)),
            Command::PrincipalRotate(body) => Ok(principal::rotate(&self.registry, body)),
            Command::Pay { .. } | Command::Balance { .. } => {
                unreachable!("single-shard commands are routed, not gathered")
            }
        }
    }
}

/// Items split by the shard that owns them, remembering each item's place
/// in the request so the answers can be put back in request order.
struct Partition<T> {
    batches: Vec<Vec<T>>,
    places: Vec<Vec<usize>>,
}

impl<T> Partition<T> {
    fn new(shard_count: usize) -> Partition<T> {
        Partition {
            batches: (0..shard_count).map(|_| Vec::new()).collect(),
            places: (0..shard_count).map(|_| Vec::new()).collect(),
        }
    }

    fn push(&mut self, shard: ShardId, place: usize, item: T) {
        self.batches[shard.index()].push(item);
        self.places[shard.index()].push(place);
    }

    /// The non-empty batches, each with its shard.
    fn take_batches(&mut self) -> Vec<(ShardId, Vec<T>)> {
        self.batches
            .iter_mut()
            .enumerate()
            .filter(|(_, batch)| !batch.is_empty())
            .map(|(index, batch)| (ShardId::from_index(index), std::mem::take(batch)))
            .collect()
    }

    /// Puts one shard's answers (in batch order) at their request places.
    fn scatter<R>(&self, shard: ShardId, answers: Vec<R>, into: &mut [R]) {
        let places = &self.places[shard.index()];
        assert_eq!(places.len(), answers.len(), "one answer per item");
        for (&place, answer) in places.iter().zip(answers) {
            into[place] = answer;
        }
    }
}
