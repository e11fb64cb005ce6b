//! Request validation: from a decoded wire request, sent by an
//! authenticated principal, to a router command.
//!
//! First the role: a request outside the principal's role is refused
//! `forbidden` (see [`crate::auth`] for the table). Then everything a peer
//! can get wrong is caught here, with an error naming what and where,
//! before any shard is involved: PIN syntax and check digits, amounts, list
//! lengths, duplicate cards, a store the HQ is not registered for. A PIN
//! with a bad check digit counts as a PIN failure against the principal,
//! and a principal that is locked out is refused before any PIN is looked
//! at. Past this point the engine only sees well-formed commands, so
//! shards can assert instead of check.
//!
//! One file per request that needs checking.

mod activate;
mod authorization;
mod balance;
mod issue;
mod order;
mod pay;
mod pay_batch;
mod payout;
mod principal;
mod refund;
mod remit;
mod reverse_activation;
mod statement;
mod token;

use crate::auth::{Guard, Principal};
use crate::config::{CARDS_PER_PAYMENT_MAX, Limits, OPERATION_BYTES};
use crate::pin::PinHasher;
use crate::protocol::{ErrorCode, Request, Response, Role};
use crate::router::Command;

/// What the reader does with one request.
pub(crate) enum Action {
    /// Route to the shards.
    Route(Command),
    /// Answer at once, without the shards.
    Reply(Response),
    /// A batch frame: one `Route` or `Reply` per payment, in order.
    Batch(Vec<Action>),
}

/// What validation needs besides the request.
pub(crate) struct Context<'a> {
    pub limits: &'a Limits,
    pub hasher: &'a PinHasher,
    pub guard: &'a Guard,
    /// The engine's clock (ms since the Unix epoch).
    pub now_ms: u64,
    /// Order ids and lookups by them (`None` in tests that need neither).
    pub storage: Option<&'a crate::storage::Storage>,
    /// The HTTP API's bearer tokens, and the principals they act as.
    pub tokens: Option<(&'a crate::auth::Tokens, &'a crate::auth::Registry)>,
}

/// A request's weight in the in-flight byte budgets (its connection's, its
/// principal's and the engine's): its frame, the most its reply can take,
/// and [`OPERATION_BYTES`] for the operation it starts.
pub(super) fn weight(kind: u8, frame_bytes: usize, limits: &Limits) -> usize {
    frame_bytes + reply_bound(kind, frame_bytes, limits) + OPERATION_BYTES
}

/// A PayBatch frame's weight: its frame, its reply, and each payment.
pub(super) fn batch_weight(
    frame_bytes: usize,
    body: &crate::protocol::PayBatchRequest,
    limits: &Limits,
) -> usize {
    // A batch over the limit is refused whole at validation and weighs as
    // the largest legal one until its refusal is written.
    let payments = body.payments.len().min(limits.max_payments_per_batch);
    frame_bytes + pay_batch::reply_bound(body, limits) + payments * OPERATION_BYTES
}

/// The most the reply to a request of `kind`, `frame_bytes` long, can take
/// on the wire. Never more than a frame.
fn reply_bound(kind: u8, frame_bytes: usize, limits: &Limits) -> usize {
    use crate::protocol::{KIND_ACTIVATE, KIND_BALANCE, KIND_PAY};
    const SMALL_BYTES: usize = 64;
    let bound = match kind {
        // A part per card (at most 23 bytes) for each PIN (at least 11).
        KIND_PAY
        | crate::protocol::KIND_AUTHORIZE
        | crate::protocol::KIND_ORDER_PAY
        | crate::protocol::KIND_ORDER_AUTHORIZE => SMALL_BYTES + 2 * frame_bytes,
        // The order id and a few numbers per card.
        crate::protocol::KIND_ORDER_LOOKUP => 4 * SMALL_BYTES + 16 * CARDS_PER_PAYMENT_MAX,
        // A result per PIN (at most 11 bytes) for each PIN (at least 11).
        KIND_ACTIVATE => SMALL_BYTES + frame_bytes,
        // A part per card of the payment (at most 13 bytes each).
        crate::protocol::KIND_REFUND | crate::protocol::KIND_CAPTURE => {
            SMALL_BYTES + 13 * crate::config::CARDS_PER_PAYMENT_MAX
        }
        KIND_BALANCE => SMALL_BYTES,
        // Weighed precisely once decoded (`batch_reply_bound`).
        crate::protocol::KIND_PAY_BATCH => limits.max_frame_bytes,
        kind if OPERATOR_KINDS.contains(&kind) => limits.max_frame_bytes,
        _ => SMALL_BYTES,
    };
    bound.min(limits.max_frame_bytes)
}

/// Operator requests, whose replies can fill a frame (a remittance's lists
/// an allocation per store of its HQ).
const OPERATOR_KINDS: [u8; 19] = [
    crate::protocol::KIND_ISSUE,
    crate::protocol::KIND_REPORT,
    crate::protocol::KIND_AUDIT,
    crate::protocol::KIND_STATS,
    crate::protocol::KIND_PRINCIPAL_ADD,
    crate::protocol::KIND_PRINCIPAL_LIST,
    crate::protocol::KIND_PRINCIPAL_REVOKE,
    crate::protocol::KIND_PRINCIPAL_ROTATE,
    crate::protocol::KIND_REMIT,
    crate::protocol::KIND_PAYOUT_CREATE,
    crate::protocol::KIND_PAYOUT_CONFIRM,
    crate::protocol::KIND_PAYOUT_LIST,
    crate::protocol::KIND_PAYOUT_SHOW,
    crate::protocol::KIND_STATEMENT,
    crate::protocol::KIND_STORE_STATEMENT,
    crate::protocol::KIND_PRINCIPAL_CERT,
    crate::protocol::KIND_TOKEN_ADD,
    crate::protocol::KIND_TOKEN_LIST,
    crate::protocol::KIND_TOKEN_REVOKE,
];

/// A request refused by validation: nothing is routed or recorded.
fn reject(code: ErrorCode, message: String) -> Action {
    Action::Reply(Response::error(code, message))
}

/// Validates `request` from `principal` (handshake messages are the
/// session's, never seen here).
pub(crate) fn validate(request: Request, principal: &Principal, context: &Context<'_>) -> Action {
    let Some(role) = required_role(&request) else {
        return Action::Reply(Response::Pong);
    };
    let pin_bearing = matches!(
        request,
        Request::Pay(_)
            | Request::PayBatch(_)
            | Request::Authorize(_)
            | Request::OrderPay(_)
            | Request::OrderAuthorize(_)
            | Request::Balance(_)
            | Request::Activate(_)
            | Request::ReverseActivation(_)
    );
    if let Some(refusal) = refused(role, pin_bearing, principal, context) {
        return refusal;
    }
    match request {
        Request::Report(body) => report(body, context.limits),
        Request::Audit => Action::Route(Command::Audit),
        Request::Stats => Action::Route(Command::Stats),
        Request::PrincipalList(body) => principal::list(body, context.limits),
        Request::PrincipalAdd(body) => principal::add(body),
        Request::PrincipalRevoke(body) => Action::Route(Command::PrincipalRevoke { id: body.id }),
        Request::PrincipalRotate(body) => Action::Route(Command::PrincipalRotate(body)),
        Request::PrincipalCert(body) => Action::Route(Command::PrincipalCert(body)),
        Request::Issue(body) => issue::validate(&body, context.limits),
        Request::Activate(body) => activate::validate(&body, principal, context),
        Request::Pay(body) => pay::validate(&body, principal, context),
        Request::PayBatch(body) => pay_batch::validate(&body, principal, context),
        Request::Balance(body) => balance::validate(&body, principal, context),
        Request::ReverseActivation(body) => reverse_activation::validate(&body, principal, context),
        Request::Refund(body) => refund::validate(&body, principal, context),
        Request::Authorize(body) => authorization::authorize(&body, principal, context),
        Request::Capture(body) => authorization::capture(&body, principal, context),
        Request::Void(body) => authorization::void(&body, principal),
        Request::OrderPay(body) => order::pay(&body, principal, context, false),
        Request::OrderAuthorize(body) => order::pay(&body, principal, context, true),
        Request::OrderLookup(body) => order::lookup(&body, principal, context),
        Request::TokenAdd(body) => token::add(body, context),
        Request::TokenList(body) => token::list(body, context),
        Request::TokenRevoke(body) => token::revoke(body, context),
        Request::Remit(body) => remit::validate(body, principal),
        Request::PayoutCreate(body) => payout::create(body, principal),
        Request::PayoutConfirm(body) => payout::confirm(body, principal),
        Request::PayoutList(body) => payout::list(body, principal, context.limits),
        Request::PayoutShow(body) => payout::show(body, principal, context.limits),
        Request::Statement(body) => statement::merchant(body, context.limits),
        Request::StoreStatement(body) => statement::store(body, context.limits),
        Request::Ping | Request::AuthHello(_) | Request::AuthProof(_) => {
            unreachable!("answered above or by the session")
        }
    }
}

/// [`validate`] for a Pay request read in place
/// ([`crate::protocol::PayRequestView`]): the same checks, the same
/// answers, without the PINs copied into strings first.
pub(crate) fn validate_pay(
    body: &crate::protocol::PayRequestView<'_>,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    if let Some(refusal) = refused(Role::Merchant, true, principal, context) {
        return refusal;
    }
    pay::validate_parts(
        body.request_id,
        body.amount_minor,
        body.pins.0.as_slice(),
        principal,
        context,
    )
}

/// The refusal of a request that needs `role`, from `principal`, before
/// its body is looked at: another role's request, or (`pin_bearing`) one
/// that names PINs while the principal is locked out.
fn refused(
    role: Role,
    pin_bearing: bool,
    principal: &Principal,
    context: &Context<'_>,
) -> Option<Action> {
    if principal.role != role {
        return Some(reject(
            ErrorCode::Forbidden,
            format!("a {} may not send this request", principal.role.name()),
        ));
    }
    if pin_bearing && let Err(locked) = context.guard.check(principal.id, context.now_ms) {
        return Some(Action::Reply(Response::Error(locked.refusal())));
    }
    None
}

/// The role that may send `request`; `None` for Ping, which any
/// authenticated principal may send.
fn required_role(request: &Request) -> Option<Role> {
    match request {
        Request::Ping | Request::AuthHello(_) | Request::AuthProof(_) => None,
        Request::Issue(_)
        | Request::Report(_)
        | Request::Audit
        | Request::Stats
        | Request::PrincipalAdd(_)
        | Request::PrincipalList(_)
        | Request::PrincipalRevoke(_)
        | Request::PrincipalRotate(_)
        | Request::PrincipalCert(_)
        | Request::TokenAdd(_)
        | Request::TokenList(_)
        | Request::TokenRevoke(_)
        | Request::Remit(_)
        | Request::PayoutCreate(_)
        | Request::PayoutConfirm(_)
        | Request::PayoutList(_)
        | Request::PayoutShow(_)
        | Request::Statement(_)
        | Request::StoreStatement(_) => Some(Role::Operator),
        Request::Activate(_) | Request::ReverseActivation(_) => Some(Role::StoreHq),
        Request::Pay(_)
        | Request::PayBatch(_)
        | Request::Balance(_)
        | Request::Refund(_)
        | Request::Authorize(_)
        | Request::Capture(_)
        | Request::Void(_)
        | Request::OrderPay(_)
        | Request::OrderAuthorize(_)
        | Request::OrderLookup(_) => Some(Role::Merchant),
    }
}

/// Report: at least one line a page, and at most `max_report_lines` (a
/// larger ask gets a page of that many, so a client need not know the
/// engine's limit; the cursor carries on from there).
fn report(mut body: crate::protocol::ReportRequest, limits: &Limits) -> Action {
    if body.limit == 0 {
        return reject(
            ErrorCode::LimitExceeded,
            "a report page has at least one line".to_string(),
        );
    }
    let most = u32::try_from(limits.max_report_lines).unwrap_or(u32::MAX);
    body.limit = body.limit.min(most);
    Action::Route(Command::Report(body))
}

/// The refusal of an amount of 0 or above the payment limit (payments,
/// authorizations, captures, refunds).
pub(crate) fn amount_refused(amount_minor: u64, limits: &Limits) -> Option<Action> {
    (amount_minor == 0 || amount_minor > limits.max_amount_minor).then(|| {
        reject(
            ErrorCode::InvalidAmount,
            format!("amount must be 1..={}", limits.max_amount_minor),
        )
    })
}

/// The refusal of a request id a client may not choose for a new
/// operation: ids from 2^63 on are derived from order ids and
/// idempotency keys (`crate::order`), so the two never meet.
fn request_id_refused(request_id: u64) -> Option<Action> {
    (!crate::order::is_client_request_id(request_id)).then(|| {
        reject(
            ErrorCode::InvalidArgument,
            format!(
                "a request id is 0..={}; larger ones name order ids",
                crate::order::CLIENT_REQUEST_ID_MAX
            ),
        )
    })
}

/// The refusal of a store HQ acting for a store it is not registered for.
fn foreign_store(principal: &Principal, store_id: u32) -> Option<Action> {
    (!principal.sells_at(store_id)).then(|| {
        reject(
            ErrorCode::Forbidden,
            format!(
                "store HQ {} is not registered for store {store_id}",
                principal.id
            ),
        )
    })
}

/// A PIN that failed its syntax or check-digit test: a failure of the
/// principal, which a shard counts durably before `refusal` is sent (or
/// `locked_out`, if the principal is locked out).
fn pin_failure(principal: &Principal, context: &Context<'_>, refusal: Action) -> Action {
    if let Err(locked) = context.guard.check(principal.id, context.now_ms) {
        return Action::Reply(Response::Error(locked.refusal()));
    }
    match refusal {
        Action::Reply(refusal) => Action::Route(Command::PinFailure {
            principal: principal.id,
            refusal,
        }),
        other => other,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::auth::{Key, Registry};
    use crate::storage::MemStore;
    use std::sync::Arc;

    /// The error `action` answers: a refusal, or the refusal a PIN failure
    /// carries to the shard that counts it.
    pub fn code_of(action: Action) -> Option<ErrorCode> {
        match action {
            Action::Reply(Response::Error(error)) => error.error_code(),
            Action::Route(Command::PinFailure {
                refusal: Response::Error(error),
                ..
            }) => error.error_code(),
            _ => None,
        }
    }

    /// Runs `check` with a validation context over `limits`, a fixed PIN
    /// hasher and a fresh guard.
    pub fn with_context<R>(limits: &Limits, check: impl FnOnce(&Context<'_>) -> R) -> R {
        let hasher = PinHasher::new(b"k");
        let guard = Guard::new(limits);
        check(&Context {
            limits,
            hasher: &hasher,
            guard: &guard,
            now_ms: crate::clock::now_ms(),
            storage: None,
            tokens: None,
        })
    }

    /// A registry with operator 0, store HQ 42 (stores 42, 43), merchant 5.
    pub fn principals() -> Registry {
        let registry = Registry::load(Arc::new(MemStore::new())).expect("load");
        for (id, role, stores) in [
            (0, Role::Operator, vec![]),
            (42, Role::StoreHq, vec![42, 43]),
            (5, Role::Merchant, vec![]),
        ] {
            registry
                .add(id, role, stores, Key::generate(id).stored_key())
                .expect("add");
        }
        registry
    }

    #[test]
    fn report_pages_are_capped_at_the_limit_and_never_empty() {
        let registry = principals();
        let limits = Limits::default();
        with_context(&limits, |context| {
            let operator = registry.get(0).expect("operator");
            let page = |limit| {
                Request::Report(crate::protocol::ReportRequest {
                    limit,
                    after: None,
                    only: None,
                })
            };
            assert_eq!(
                code_of(validate(page(0), &operator, context)),
                Some(ErrorCode::LimitExceeded)
            );
            for (asked, sent) in [(1, 1), (1000, 1000), (u32::MAX, 1000)] {
                match validate(page(asked), &operator, context) {
                    Action::Route(Command::Report(request)) => assert_eq!(request.limit, sent),
                    _ => panic!("a page of {asked} is routed"),
                }
            }
        })
    }

    #[test]
    fn each_role_may_send_only_its_own_requests() {
        let registry = principals();
        let limits = Limits::default();
        with_context(&limits, |context| {
            let issue = || {
                Request::Issue(crate::protocol::IssueRequest {
                    count: 1,
                    face_value_minor: 500,
                })
            };
            let activate = |store_id| {
                Request::Activate(crate::protocol::ActivateRequest {
                    store_id,
                    pos_ref: 0,
                    pins: vec!["79927398713".into()],
                })
            };
            let operator = registry.get(0).expect("operator");
            let hq = registry.get(42).expect("store hq");
            let merchant = registry.get(5).expect("merchant");
            let forbidden = Some(ErrorCode::Forbidden);
            assert!(matches!(
                validate(issue(), &operator, context),
                Action::Route(_)
            ));
            assert_eq!(code_of(validate(issue(), &merchant, context)), forbidden);
            assert_eq!(
                code_of(validate(activate(42), &merchant, context)),
                forbidden
            );
            assert_eq!(code_of(validate(Request::Audit, &hq, context)), forbidden);
            assert!(matches!(
                validate(activate(43), &hq, context),
                Action::Route(_)
            ));
            assert_eq!(code_of(validate(activate(44), &hq, context)), forbidden);
            for principal in [&operator, &hq, &merchant] {
                assert!(matches!(
                    validate(Request::Ping, principal, context),
                    Action::Reply(Response::Pong)
                ));
            }
        })
    }
}
