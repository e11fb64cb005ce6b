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
//!   [`principal`]: the operator's management of principals; [`payout`]:
//!   the center's payouts to merchants; [`statement`]: a merchant's
//!   period. A store HQ's remittance is routed to
//!   [`crate::operation::remit`].
//!
//! Queues past the router are bounded: each shard's mailbox holds at most
//! `shard_mailbox_capacity` messages, and a connection's requests for a
//! full one are answered `busy` at once (the router never waits). Every
//! gathering future answers a request the connection admitted under its
//! in-flight limits, and operator requests run in the [`AdminLane`], a few
//! at a time, their RocksDB reads and writes on the blocking pool
//! ([`crate::operation::blocking`]).

mod activate;
mod admin;

pub use admin::AdminLane;
mod issue;
mod payout;
mod principal;
mod statement;

pub use crate::operation::remit::Remittances;
pub use payout::{PayoutCommand, Payouts};

use crate::auth::{Certs, Principal, Registry};
use crate::ids::{CardList, CardRef, OperationId, PaymentId, RefundId, ShardId, StoreId};
use crate::operation::Coordinator;
use crate::operation::blocking;
use crate::order::OrderId;
use crate::pin::{PinHasher, PinKey};
use crate::protocol::{
    ErrorCode, PrincipalAddRequest, PrincipalCertRequest, PrincipalListRequest,
    PrincipalRotateRequest, RemitRequest, ReportRequest, Response, StatementRequest,
    StoreStatementRequest,
};
use crate::reply::{self, Reply, ReplyTx, Tag};
use crate::shard::{ClientOp, ShardGone, Shards};
use std::sync::Arc;

/// A validated request, PINs already turned into keys.
#[derive(Debug)]
pub enum Command {
    Pay {
        payment: PaymentId,
        amount_minor: u64,
        cards: CardList,
        /// The merchant's order id naming the payment (`crate::order`).
        order_id: Option<OrderId>,
    },
    Balance {
        /// The merchant or store HQ asking (its PIN failures are counted).
        principal: u32,
        card: CardRef,
        /// Set when a store HQ asks: only its own stores' cards.
        hq: Option<Arc<Principal>>,
    },
    /// `None` marks a PIN that failed validation (answered `InvalidPin` in
    /// its place, without failing the rest of the batch).
    Activate {
        /// The store HQ reporting the sale.
        principal: u32,
        store_id: StoreId,
        pos_ref: u64,
        cards: Vec<Option<PinKey>>,
        /// The amount charged for each card, when the protocol carries one
        /// (ISO 8583 DE 4): declined unless it is the card's face value.
        face_value_minor: Option<u64>,
    },
    ReverseActivation {
        /// The store HQ reversing the sale.
        principal: u32,
        store_id: StoreId,
        pos_ref: u64,
        key: PinKey,
        /// The amount reversed, when the protocol carries one: it must be
        /// the card's face value.
        face_value_minor: Option<u64>,
    },
    /// A PIN the gateway found bad (check digit, syntax): a failure of
    /// `principal`, counted durably by a shard before `refusal` is sent.
    PinFailure {
        principal: u32,
        refusal: Response,
    },
    Refund {
        refund: RefundId,
        payment: PaymentId,
        amount_minor: u64,
    },
    Authorize {
        authorization: PaymentId,
        amount_minor: u64,
        cards: CardList,
        order_id: Option<OrderId>,
    },
    /// A capture of `amount_minor`, or (`None`) a void.
    Capture {
        operation: OperationId,
        authorization: PaymentId,
        amount_minor: Option<u64>,
    },
    Issue {
        count: usize,
        face_value_minor: u64,
    },
    Report(ReportRequest),
    Audit,
    Stats,
    PrincipalAdd(PrincipalAddRequest),
    /// A page of principals, cut to fit a frame of `max_frame_bytes`.
    PrincipalList {
        request: PrincipalListRequest,
        max_frame_bytes: usize,
    },
    PrincipalRevoke {
        id: u32,
    },
    PrincipalRotate(PrincipalRotateRequest),
    /// A store HQ's client certificate for the ISO 8583 listener.
    PrincipalCert(PrincipalCertRequest),
    Remit {
        /// The operator recording it.
        operator: u32,
        request: RemitRequest,
    },
    Payout {
        operator: u32,
        command: PayoutCommand,
    },
    Statement(StatementRequest),
    StoreStatement(StoreStatementRequest),
}

/// One read's single-shard work, by shard: inline for up to
/// [`PER_SHARD_INLINE`] shards, not one more allocation per read.
type PerShard = smallvec::SmallVec<[Vec<(Tag, ClientOp)>; PER_SHARD_INLINE]>;
const PER_SHARD_INLINE: usize = 8;

/// What the router reaches: the shards and the engine-wide services.
pub struct Router {
    pub shards: Arc<Shards>,
    pub coordinator: Arc<Coordinator>,
    pub registry: Arc<Registry>,
    /// Store HQs' client certificates on the ISO 8583 listener.
    pub certs: Arc<Certs>,
    pub storage: Arc<crate::storage::Storage>,
    pub remittances: Remittances,
    pub payouts: Payouts,
    pub admin: AdminLane,
    pub hasher: PinHasher,
    pub pin_digits: usize,
    pub audit_slice_cards: usize,
}

impl Router {
    /// Routes one read's commands; answers go to `reply`. Never waits: a
    /// shard whose mailbox is full gets nothing, and its requests are
    /// answered `busy` at once; operator requests beyond the admin lane's
    /// room likewise.
    pub fn route(self: &Arc<Self>, reply: &ReplyTx, commands: Vec<(Tag, Command)>) {
        let mut per_shard: PerShard = (0..self.shards.count()).map(|_| Vec::new()).collect();
        for (tag, command) in commands {
            match self.owning_shard(&command) {
                Some(shard) => per_shard[shard.index()].push((tag, client_op(command))),
                None => self.start_beside(reply, tag, command),
            }
        }
        self.send_to_shards(reply, per_shard);
    }

    /// The one shard that answers `command` alone, if there is one: a
    /// payment whose cards share a shard, a balance inquiry, a reversal, a
    /// PIN failure (counted on the principal's shard).
    fn owning_shard(&self, command: &Command) -> Option<ShardId> {
        match command {
            Command::Pay { cards, .. } => self.single_shard(cards),
            Command::Balance { card, .. } => Some(self.shards.of(&card.key)),
            Command::ReverseActivation { key, .. } => Some(self.shards.of(key)),
            Command::PinFailure { principal, .. } => {
                let index = *principal as usize % self.shards.count();
                Some(ShardId::from_index(index))
            }
            _ => None,
        }
    }

    /// Starts work that no one shard answers alone: beside the connection
    /// (payments across shards, activations, refunds, authorizations,
    /// captures), or in the admin lane (operator requests).
    fn start_beside(self: &Arc<Self>, reply: &ReplyTx, tag: Tag, command: Command) {
        match command {
            Command::Pay {
                payment,
                amount_minor,
                cards,
                order_id,
            } => answer_beside(self, reply, tag, move |router| async move {
                let coordinator = &router.coordinator;
                Ok(coordinator
                    .pay(payment, amount_minor, cards.into_vec(), order_id)
                    .await)
            }),
            Command::Activate {
                principal,
                store_id,
                pos_ref,
                cards,
                face_value_minor,
            } => answer_beside(self, reply, tag, move |router| async move {
                let sale = activate::Sale {
                    principal,
                    store_id,
                    pos_ref,
                    face_value_minor,
                };
                activate::activate(&router.shards, sale, cards).await
            }),
            Command::Refund {
                refund,
                payment,
                amount_minor,
            } => answer_beside(self, reply, tag, move |router| async move {
                let coordinator = &router.coordinator;
                Ok(coordinator.refund(refund, payment, amount_minor).await)
            }),
            Command::Authorize {
                authorization,
                amount_minor,
                cards,
                order_id,
            } => answer_beside(self, reply, tag, move |router| async move {
                let coordinator = &router.coordinator;
                Ok(coordinator
                    .authorize(authorization, amount_minor, cards.into_vec(), order_id)
                    .await)
            }),
            Command::Capture {
                operation,
                authorization,
                amount_minor,
            } => answer_beside(self, reply, tag, move |router| async move {
                let coordinator = &router.coordinator;
                Ok(coordinator
                    .capture(operation, authorization, amount_minor)
                    .await)
            }),
            admin => self.answer_in_admin_lane(reply, tag, admin),
        }
    }

    /// Sends each shard its part of the read, in one message; a shard whose
    /// mailbox is full gets nothing, and its requests are answered `busy`.
    fn send_to_shards(&self, reply: &ReplyTx, per_shard: PerShard) {
        for (index, ops) in per_shard.into_iter().enumerate() {
            if ops.is_empty() {
                continue;
            }
            let shard = ShardId::from_index(index);
            if let Err(refused) = self.shards.try_client(shard, reply.clone(), ops) {
                let busy = refused
                    .into_iter()
                    .map(|(tag, _)| (tag, busy("the shard's queue is full")))
                    .collect();
                reply::send(reply, Reply::Many(busy));
            }
        }
    }

    /// The shard all of a payment's cards live on, if they share one.
    fn single_shard(&self, cards: &[CardRef]) -> Option<ShardId> {
        let first = self.shards.of(&cards.first()?.key);
        cards
            .iter()
            .all(|card| self.shards.of(&card.key) == first)
            .then_some(first)
    }

    /// Runs an operator request in the admin lane, or answers `busy`.
    fn answer_in_admin_lane(self: &Arc<Self>, reply: &ReplyTx, tag: Tag, command: Command) {
        let Some(place) = self.admin.try_enter() else {
            let response = busy("the admin lane is full");
            return reply::send(reply, Reply::One(tag, response));
        };
        let (router, reply) = (self.clone(), reply.clone());
        self.admin.spawn(async move {
            let response = router.admin(command).await.unwrap_or_else(shutting_down);
            drop(place);
            reply::send(&reply, Reply::One(tag, response));
        });
    }

    /// Operator commands.
    async fn admin(&self, command: Command) -> Result<Response, ShardGone> {
        match command {
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
            Command::Report(request) => admin::report(&self.shards, request).await,
            Command::Audit => {
                let audits = self.admin.audits();
                admin::audit(&self.shards, &audits, self.audit_slice_cards).await
            }
            Command::Stats => admin::stats(&self.shards).await,
            Command::PrincipalList {
                request,
                max_frame_bytes,
            } => Ok(principal::list(&self.registry, request, max_frame_bytes)),
            change @ (Command::PrincipalAdd(_)
            | Command::PrincipalRevoke { .. }
            | Command::PrincipalRotate(_)
            | Command::PrincipalCert(_)) => self.change_principal(change).await,
            books @ (Command::Statement(_)
            | Command::StoreStatement(_)
            | Command::Payout { .. }
            | Command::Remit { .. }) => self.books(books).await,
            Command::Pay { .. }
            | Command::Balance { .. }
            | Command::Activate { .. }
            | Command::PinFailure { .. }
            | Command::ReverseActivation { .. }
            | Command::Refund { .. }
            | Command::Authorize { .. }
            | Command::Capture { .. } => {
                unreachable!("card commands are routed to the shards")
            }
        }
    }

    /// A change to the principals: the registry writes it durably (a
    /// synced RocksDB commit) before it answers, so it runs on the
    /// blocking pool, not on the lane's executor (`operation/blocking.rs`).
    async fn change_principal(&self, command: Command) -> Result<Response, ShardGone> {
        let (registry, certs) = (self.registry.clone(), self.certs.clone());
        blocking::run(move || match command {
            Command::PrincipalAdd(body) => principal::add(&registry, body),
            Command::PrincipalRevoke { id } => principal::revoke(&registry, id),
            Command::PrincipalRotate(body) => principal::rotate(&registry, body),
            Command::PrincipalCert(body) => principal::cert(&registry, &certs, body),
            _ => unreachable!("only principal changes are written here"),
        })
        .await
    }

    /// The center's books: statements, payouts and remittances.
    async fn books(&self, command: Command) -> Result<Response, ShardGone> {
        // They read only, through the `Store` interface, and never on the
        // lane's executor (`operation/blocking.rs`).
        let storage: blocking::SharedStore = self.storage.clone();
        let (shards, storage, registry) = (&self.shards, &storage, &self.registry);
        match command {
            Command::StoreStatement(request) => {
                statement::store_statement(shards, storage, request).await
            }
            Command::Statement(request) => {
                statement::statement(shards, storage, registry, request).await
            }
            Command::Payout { operator, command } => {
                let payouts = &self.payouts;
                payout::run(shards, storage, registry, payouts, operator, command).await
            }
            Command::Remit { operator, request } => {
                let remittances = &self.remittances;
                crate::operation::remit::remit(
                    shards,
                    storage,
                    registry,
                    remittances,
                    operator,
                    request,
                )
                .await
            }
            _ => unreachable!("only statements, payouts and remittances are the books'"),
        }
    }
}

/// Runs `work` beside the connection (on its arbiter), with its own handle
/// on the router, and sends its answer when done.
fn answer_beside<W>(
    router: &Arc<Router>,
    reply: &ReplyTx,
    tag: Tag,
    work: impl FnOnce(Arc<Router>) -> W + 'static,
) where
    W: Future<Output = Result<Response, ShardGone>> + 'static,
{
    let (router, reply) = (router.clone(), reply.clone());
    actix_rt::spawn(async move {
        let response = work(router).await.unwrap_or_else(shutting_down);
        reply::send(&reply, Reply::One(tag, response));
    });
}

/// The shard operation for a command that its owning shard answers alone
/// ([`Router::owning_shard`] said which).
fn client_op(command: Command) -> ClientOp {
    match command {
        Command::Pay {
            payment,
            amount_minor,
            cards,
            order_id,
        } => ClientOp::Pay {
            payment,
            amount_minor,
            cards,
            order_id,
        },
        Command::Balance {
            principal,
            card,
            hq,
        } => ClientOp::Balance {
            principal,
            key: card.key,
            hq,
        },
        Command::PinFailure { principal, refusal } => ClientOp::PinFailures {
            principal,
            count: 1,
            refusal,
        },
        Command::ReverseActivation {
            principal,
            store_id,
            pos_ref,
            key,
            face_value_minor,
        } => ClientOp::ReverseActivation {
            principal,
            store_id,
            pos_ref,
            key,
            face_value_minor,
        },
        _ => unreachable!("only commands with an owning shard become shard operations"),
    }
}

fn shutting_down(_: ShardGone) -> Response {
    Response::error(ErrorCode::Internal, "engine is shutting down")
}

/// The refusal of an operator request naming a principal that is not a
/// merchant (payouts, statements).
fn unknown_merchant(registry: &Registry, merchant_id: u32) -> Option<Response> {
    let principal = registry.get(merchant_id);
    principal
        .is_none_or(|principal| principal.role != crate::protocol::Role::Merchant)
        .then(|| Response::error(ErrorCode::InvalidArgument, "merchant_id names no merchant"))
}

/// The retryable refusal of a full engine: nothing was done.
pub(crate) fn busy(what: &str) -> Response {
    Response::error(
        ErrorCode::Busy,
        format!("{what}; nothing was done, retry shortly"),
    )
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
