//! The card shard: an actor that owns one [`ShardMachine`] and drives it.
//!
//! A card belongs to shard `pin_key mod N`. The shard is the only place that
//! reads or changes its cards, so no locks guard them: the actor's mailbox
//! serialises every operation. For each message it prefetches what the
//! operation needs from storage (a payment's earlier outcome), lets the
//! state machine apply it to memory, and puts the write-set and the typed
//! reply into the pending batch. Durability and replying belong to its
//! writer thread (see [`writer`]): nothing is answered before it is synced.
//!
//! * [`messages`]: what a shard takes: client work, and every other
//!   operation as data ([`ShardOp`], answered with a [`ShardAnswer`]).
//! * [`apply`]: the one handler for a [`ShardOp`], which the state
//!   machine applies.
//! * [`handle`]: [`Shards`], how the rest of the engine reaches the shards
//!   ([`Shards::ask`]), through bounded mailboxes.
//! * [`writer`]: group commit.

mod apply;
mod handle;
mod messages;
mod writer;

pub use crate::state_machine::{Activation, NewCard, ShardAnswer, ShardOp};
pub use handle::{ShardGone, Shards};

/// What every shard shares with the rest of the engine.
#[derive(Clone)]
pub struct Services {
    pub storage: Arc<Storage>,
    /// Where the writers make batches durable first (see [`writer`]).
    pub log: Arc<dyn CommandLog>,
    pub checkpoints: Arc<Checkpoints>,
    /// Payments being processed, engine-wide.
    pub claims: Arc<Claims>,
    /// Which request ids are new without a read, engine-wide.
    pub watermarks: Arc<Watermarks>,
    /// PIN failures per principal.
    pub guard: Arc<Guard>,
    /// How long after its activation a sale may be reversed.
    pub reversal_window_ms: u64,
    /// The validity given to cards sold now.
    pub card_validity_days: u16,
    /// How often the shard sweeps for expired cards, and how many it looks
    /// at each time.
    pub expiry_sweep: std::time::Duration,
    pub expiry_sweep_cards: usize,
    /// A batch gathered while the writer is busy is cut (and queued) once
    /// its changes reach this many bytes, so a record stays within what
    /// the log takes (half of its largest record: one more message's
    /// changes fit in the other half).
    pub group_commit_bytes_max: usize,
}
pub use messages::ClientOp;

use crate::auth::Guard;
use crate::card::DeclineReason;
use crate::command_log::CommandLog;
use crate::command_log::replay::Checkpoints;
use crate::idempotency::{self, Claims, Watermarks};
use crate::ids::{CardRef, PaymentId};
use crate::order::OrderId;
use crate::protocol::{Response, ReverseActivationResponse};
use crate::state_machine::ShardMachine;
use crate::storage::Storage;
use actix::prelude::*;
use messages::ClientWork;
use std::sync::{Arc, Mutex};
use writer::{Delivery, Pending, WriterStats};

/// From the writer thread: the batch it was given is durable and answered;
/// here are its emptied buffers back.
struct Durable(Pending);

impl Message for Durable {
    type Result = ();
}

pub struct Shard {
    machine: ShardMachine,
    services: Services,
    /// The batch being gathered while the writer syncs the previous one.
    pending: Pending,
    /// Batches cut while the writer was busy, shipped in order before
    /// `pending`.
    ready: std::collections::VecDeque<Pending>,
    /// Buffers returned by the writer, reused for the next batch.
    spare: Option<Pending>,
    writer: Option<crossbeam_channel::Sender<Pending>>,
    writer_busy: bool,
    stats: Arc<Mutex<WriterStats>>,
}

impl Shard {
    fn new(machine: ShardMachine, services: Services) -> Shard {
        Shard {
            machine,
            services,
            pending: Pending::default(),
            ready: std::collections::VecDeque::new(),
            spare: None,
            writer: None,
            writer_busy: false,
            stats: Arc::new(Mutex::new(WriterStats::new())),
        }
    }

    /// Hands the oldest batch to the writer unless it is busy (then the
    /// pending batch keeps growing until the writer returns, or until it
    /// is large enough to be cut and queued).
    fn ship_if_idle(&mut self) {
        if self.writer_busy {
            if self.pending.changes.byte_len() >= self.services.group_commit_bytes_max {
                let batch = self.cut();
                self.ready.push_back(batch);
            }
            return;
        }
        let batch = match self.ready.pop_front() {
            Some(batch) => batch,
            None if self.pending.is_empty() => return,
            None => self.cut(),
        };
        let writer = self
            .writer
            .as_ref()
            .expect("writer runs while the shard does");
        writer
            .send(batch)
            .expect("the writer thread lives as long as the shard");
        self.writer_busy = true;
    }

    /// Closes the pending batch (its books' rows join it) and starts the
    /// next.
    fn cut(&mut self) -> Pending {
        self.machine.end_batch(&mut self.pending.changes);
        let next = self.spare.take().unwrap_or_default();
        std::mem::replace(&mut self.pending, next)
    }

    /// Queues a typed reply for when the current batch is durable.
    fn deliver_when_durable(&mut self, ops: usize, delivery: Delivery) {
        self.pending.ops += ops;
        self.pending.deliveries.push(delivery);
        self.ship_if_idle();
    }

    /// A payment whose cards all live here: claim, prefetch, decide.
    fn pay(
        &mut self,
        payment: PaymentId,
        amount_minor: u64,
        cards: &[CardRef],
        order_id: Option<&str>,
        now_ms: u64,
    ) -> Response {
        if let Err(busy) = idempotency::claim(&self.services.claims, payment) {
            return Response::Error(busy);
        }
        // Released by the writer once this batch is durable.
        self.pending.claims.push(payment);
        let storage = self.services.storage.as_ref();
        let decided =
            idempotency::prefetch(storage, &self.services.watermarks, payment).and_then(|prior| {
                let changes = &mut self.pending.changes;
                self.machine.pay(
                    payment,
                    amount_minor,
                    cards,
                    order_id,
                    prior.as_ref(),
                    now_ms,
                    changes,
                )
            });
        match decided {
            Ok(paid) => Response::Paid(paid),
            Err(error) => Response::Error(error),
        }
    }
}

impl Shard {
    /// Runs one PIN check for `principal` under the PIN-guessing guard:
    /// refused `locked_out` while it is locked out, otherwise run, and
    /// counted as a failure when `check` says so.
    fn guarded(
        &mut self,
        principal: u32,
        now_ms: u64,
        check: impl FnOnce(&mut Shard) -> (Response, bool),
    ) -> Response {
        let guard = self.services.guard.clone();
        let admission = match guard.admit(principal, now_ms) {
            Ok(admission) => admission,
            Err(locked) => return Response::Error(locked.refusal()),
        };
        let (response, failed) = check(self);
        // A failure is written with this batch: durable before the answer.
        guard.settle(admission, failed, now_ms, &mut self.pending.changes);
        response
    }

    /// Counts `count` failures of `principal` found without a shard (bad
    /// check digits) or after the fact, into this batch: durable before the
    /// refusal that tells of them.
    fn count_failures(
        &mut self,
        principal: u32,
        count: u32,
        now_ms: u64,
    ) -> Result<(), crate::auth::LockedOut> {
        let guard = &self.services.guard;
        let changes = &mut self.pending.changes;
        crate::state_machine::count_failures(guard, principal, count, now_ms, changes)
    }

    /// Whether a payment's answer counts as a PIN failure: a card unknown
    /// or unsold, or a recorded decline that repeats one on cards that have
    /// not changed since (`Card::note_decline`; a repeat writes a record
    /// nobody needs, so it costs its sender like a guess).
    fn pay_failed(&mut self, response: &Response, cards: &[CardRef]) -> bool {
        let Response::Paid(paid) = response else {
            return false;
        };
        if paid.replayed || paid.is_approved() {
            return false;
        }
        if paid.reason() == Some(DeclineReason::InvalidCard) {
            return true;
        }
        let blamed = crate::state_machine::declined_cards(paid, cards);
        self.machine
            .note_decline(blamed.iter().map(|card| &card.key))
    }
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // One batch is synced while the next gathers: a channel of one.
        let (tx, rx) = crossbeam_channel::bounded::<Pending>(1);
        self.writer = Some(tx);
        let me = ctx.address().downgrade();
        let (id, claims, stats) = (
            self.machine.id(),
            self.services.claims.clone(),
            self.stats.clone(),
        );
        let durability = writer::Durability {
            storage: self.services.storage.clone(),
            log: self.services.log.clone(),
            checkpoints: self.services.checkpoints.clone(),
        };
        std::thread::Builder::new()
            .name(format!("kessai-writer-{id}"))
            .spawn(move || {
                writer::run(id, durability, claims, stats, rx, |pending| {
                    if let Some(shard) = me.upgrade() {
                        shard.do_send(Durable(pending));
                    }
                })
            })
            .expect("spawn writer thread");
        ctx.run_interval(self.services.expiry_sweep, |shard, _ctx| {
            shard.sweep_expired()
        });
    }
}

impl Shard {
    /// A slice of the expiry sweep: its changes ride the next group commit.
    fn sweep_expired(&mut self) {
        let now_ms = crate::clock::now_ms();
        let cards = self.services.expiry_sweep_cards;
        let expired = self
            .machine
            .expiry_sweep(now_ms, cards, &mut self.pending.changes);
        if expired > 0 {
            crate::telemetry::cards_expired(expired);
            self.ship_if_idle();
        }
    }
}

impl Handler<Durable> for Shard {
    type Result = ();

    fn handle(&mut self, durable: Durable, _ctx: &mut Context<Self>) {
        assert!(self.writer_busy, "a batch came back that was never shipped");
        self.writer_busy = false;
        self.spare = Some(durable.0);
        self.ship_if_idle();
    }
}

impl Handler<ClientWork> for Shard {
    type Result = ();

    fn handle(&mut self, work: ClientWork, _ctx: &mut Context<Self>) {
        let ClientWork { reply, ops, _slot } = work;
        // The message has left the mailbox: its slot goes back now, not when
        // this handler returns. The writer thread answers the client as soon
        // as the batch is durable, which can be before this handler returns;
        // a client that sends its next request on that answer must find the
        // slot free, or a strictly sequential client could be told `busy`.
        drop(_slot);
        let now_ms = crate::clock::now_ms();
        let mut replies = Vec::with_capacity(ops.len());
        for (tag, op) in ops {
            replies.push((tag, self.apply_client(op, now_ms)));
        }
        self.deliver_when_durable(replies.len(), Delivery::Client(reply, replies));
    }
}

impl Shard {
    /// Applies one client operation under its principal's lockout guard;
    /// its answer.
    fn apply_client(&mut self, op: ClientOp, now_ms: u64) -> Response {
        match op {
            ClientOp::Pay {
                payment,
                amount_minor,
                cards,
                order_id,
            } => self.guarded(payment.merchant_id, now_ms, |shard| {
                let order_id = order_id.as_ref().map(OrderId::as_str);
                let response = shard.pay(payment, amount_minor, &cards, order_id, now_ms);
                let failed = shard.pay_failed(&response, &cards);
                (response, failed)
            }),
            ClientOp::PinFailures {
                principal,
                count,
                refusal,
            } => self
                .count_failures(principal, count, now_ms)
                .map_or_else(|locked| Response::Error(locked.refusal()), |()| refusal),
            ClientOp::Balance { principal, key, hq } => self.guarded(principal, now_ms, |shard| {
                // A store HQ asking about another HQ's card fails like an
                // unknown PIN: an answer that tells a sold card from an
                // unknown one is worth guessing for, so it counts.
                let balance = match &hq {
                    Some(hq) => shard.machine.balance_of_own(&key, &hq.stores, now_ms),
                    None => shard.machine.balance(&key, now_ms),
                };
                match balance {
                    Ok(balance) => (Response::Balance(balance), false),
                    Err(error) => (Response::Error(error), true),
                }
            }),
            ClientOp::ReverseActivation {
                principal,
                store_id,
                pos_ref,
                key,
                face_value_minor,
            } => self.guarded(principal, now_ms, |shard| {
                if let Some(amount_minor) = face_value_minor
                    && let Err(reason) = shard.machine.check_face_value(&key, amount_minor)
                {
                    let declined = ReverseActivationResponse::declined(reason);
                    return (Response::ActivationReversed(declined), false);
                }
                let window_ms = shard.services.reversal_window_ms;
                let changes = &mut shard.pending.changes;
                let reversed = shard
                    .machine
                    .reverse_activation(key, store_id, pos_ref, now_ms, window_ms, changes);
                let failed = reversed.reason == Some(DeclineReason::UnknownPin);
                (Response::ActivationReversed(reversed), failed)
            }),
        }
    }
}
