//! The endpoints under `/v1` and their JSON bodies (`docs/HTTP.md`).
//!
//! Each handler authenticates, checks the role, reads its body, builds the
//! binary protocol's request for the same operation and lets the gateway's
//! validation check it (PIN syntax and check digits, counted as PIN
//! failures; amounts; card counts; the lockout; order ids kept with their
//! payments), then admits it and routes it exactly as the binary port
//! would. Captures, voids and refunds name their operation by the
//! `Idempotency-Key` header, mapped to a request id like an order id.

use super::HttpContext;
use super::exchange::{self, Admitted};
use super::problem::{self, Failure};
use crate::auth::Principal;
use crate::card::DeclineReason;
use crate::gateway::validate::{self, Action, amount_refused};
use crate::order::{self, OrderId};
use crate::protocol::{
    AuthorizeResponse, BalanceRequest, CaptureResponse, OrderInfo, OrderPayRequest, OrderStatus,
    PayResponse, RefundResponse, Request, Response, Role, VoidResponse,
};
use crate::router::Command;
use actix_web::http::StatusCode;
use actix_web::web::{Data, Path, Payload};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A payment, or an authorization (`capture: false`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// The merchant's own id for it: 1-50 of `A-Z a-z 0-9 . _ : -`. The
    /// idempotency key: resending the same request replays the answer.
    #[schema(
        min_length = 1,
        max_length = 50,
        pattern = "^[A-Za-z0-9._:-]{1,50}$",
        example = "ORD-2026-000123"
    )]
    pub order_id: String,
    /// The cards, taken from in this order (1 to the engine's
    /// `max_cards_per_payment`).
    #[schema(min_items = 1, max_items = 16)]
    pub pins: Vec<String>,
    /// In minor units (an integer; no decimals).
    #[schema(minimum = 1, example = 500)]
    pub amount: u64,
    /// Must be the engine's currency.
    #[schema(example = "JPY")]
    pub currency: String,
    /// False: hold the amount (an authorization) to capture or void later.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub capture: bool,
}

fn yes() -> bool {
    true
}

/// A capture of part or all of an authorization, or a refund.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountRequest {
    /// In minor units (an integer).
    #[schema(minimum = 1, example = 300)]
    pub amount: u64,
}

/// A card's balance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceQuery {
    pub pin: String,
}

/// One card's part: what was taken, held, captured or refunded.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardPart {
    /// The PIN's last four digits.
    pub pin_last4: String,
    /// Minor units; absent where the engine keeps no per-card figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
}

/// A payment or authorization, as created or as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Payment {
    pub order_id: String,
    /// `payment` or `authorization`.
    pub kind: String,
    /// `approved`, `declined` or `authorized`.
    pub status: String,
    /// The decline reason, when declined (or voided, or released).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub amount: u64,
    pub currency: String,
    /// Taken from the cards (a captured authorization: what was captured).
    pub taken: u64,
    /// Given back by refunds so far.
    pub refunded: u64,
    pub cards: Vec<CardPart>,
    /// When an open authorization is released (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Capture {
    pub order_id: String,
    /// `captured`, `voided` or `declined`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Captured (0 for a void).
    pub amount: u64,
    /// Held and given back to the cards.
    pub released: u64,
    pub currency: String,
    pub cards: Vec<CardPart>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Refund {
    pub order_id: String,
    /// `refunded` or `declined`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub amount: u64,
    /// Refunded from the payment so far, this refund included.
    pub refunded_total: u64,
    pub currency: String,
    pub cards: Vec<CardPart>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    /// `issued`, `active`, `exhausted`, `expired`, ...
    pub state: String,
    pub face_value: u64,
    pub balance: u64,
    /// The balance less what authorizations hold.
    pub available: u64,
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// What every authenticated endpoint may answer besides its own.
#[derive(utoipa::IntoResponses)]
#[allow(
    dead_code,
    reason = "documentation only: the OpenAPI document's shared responses"
)]
pub enum Refusals {
    #[response(
        status = 401,
        description = "No valid bearer token",
        content_type = "application/problem+json"
    )]
    Unauthorized(problem::Problem),
    #[response(
        status = 403,
        description = "The token's principal has another role",
        content_type = "application/problem+json"
    )]
    Forbidden(problem::Problem),
    #[response(
        status = 429,
        description = "Locked out after PIN failures: retry after `Retry-After`",
        content_type = "application/problem+json"
    )]
    LockedOut(problem::Problem),
    #[response(
        status = 500,
        description = "The engine failed; the request may be retried",
        content_type = "application/problem+json"
    )]
    Internal(problem::Problem),
    #[response(
        status = 503,
        description = "Busy, nothing done: retry after `Retry-After`",
        content_type = "application/problem+json"
    )]
    Busy(problem::Problem),
}

/// What every endpoint with a JSON body may answer besides its own.
#[derive(utoipa::IntoResponses)]
#[allow(
    dead_code,
    reason = "documentation only: the OpenAPI document's shared responses"
)]
pub enum BodyRefusals {
    #[response(
        status = 400,
        description = "Not JSON",
        content_type = "application/problem+json"
    )]
    MalformedJson(problem::Problem),
    #[response(
        status = 408,
        description = "The body did not arrive in time",
        content_type = "application/problem+json"
    )]
    BodyTimeout(problem::Problem),
    #[response(
        status = 413,
        description = "The body is too large",
        content_type = "application/problem+json"
    )]
    TooLarge(problem::Problem),
}

type Answer = Result<HttpResponse, Failure>;

/// Turns a handler's outcome into its response.
pub fn finish(answer: Answer) -> HttpResponse {
    answer.unwrap_or_else(|failure| failure.response())
}

/// Create a payment or an authorization.
#[utoipa::path(
    post, path = "/v1/payments", tag = "payments",
    request_body = PaymentRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Approved (or authorized); replays carry `Idempotent-Replayed: true`", body = Payment),
        (status = 402, description = "Declined: `type` names the reason, `payment` holds the payment", body = problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same order id is in flight", body = problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request, or the order id reused for a different payment", body = problem::Problem, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    )
)]
pub async fn create_payment(
    context: Data<HttpContext>,
    request: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    finish(create(&context, &request, payload).await)
}

async fn create(context: &Data<HttpContext>, request: &HttpRequest, payload: Payload) -> Answer {
    let principal = merchant(context, request)?;
    let body: PaymentRequest = exchange::body(context, payload).await?;
    check_currency(context, &body.currency)?;
    let order_id = body.order_id.clone();
    let order_request = OrderPayRequest {
        order_id: body.order_id,
        amount_minor: body.amount,
        pins: body.pins,
    };
    let wire = if body.capture {
        Request::OrderPay(order_request)
    } else {
        Request::OrderAuthorize(order_request)
    };
    let response = engine(context, request, &principal, wire).await?;
    let currency = &context.currency;
    match response {
        Response::Paid(paid) => Ok(paid_answer(&order_id, currency, &paid)),
        Response::Authorized(held) => Ok(held_answer(&order_id, currency, &held)),
        other => Err(failure_of(context, &principal, other)),
    }
}

/// Look a payment or authorization up by its order id.
#[utoipa::path(
    get, path = "/v1/payments/{order_id}", tag = "payments",
    params(("order_id" = String, Path, description = "The merchant's order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment as it is now", body = Payment),
        (status = 404, description = "Nothing decided under this order id", body = problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an order id", body = problem::Problem, content_type = "application/problem+json"),
        Refusals,
    )
)]
pub async fn get_payment(
    context: Data<HttpContext>,
    request: HttpRequest,
    order_id: Path<String>,
) -> HttpResponse {
    finish(lookup(&context, &request, &order_id))
}

fn lookup(context: &HttpContext, request: &HttpRequest, order_id: &str) -> Answer {
    let principal = merchant(context, request)?;
    let order = parse_order(order_id)?;
    let storage = &context.gateway.router.storage;
    match order::lookup(storage, principal.id, &order) {
        Ok(Some(info)) => Ok(HttpResponse::Ok().json(payment_of_info(&info, &context.currency))),
        Ok(None) => Err(Failure::new(
            StatusCode::NOT_FOUND,
            "payment-not-found",
            "nothing was decided under this order id",
        )),
        Err(error) => Err(Failure::of_engine(&error, 0)),
    }
}

/// Capture part or all of an authorization.
#[utoipa::path(
    post, path = "/v1/payments/{order_id}/capture", tag = "payments",
    params(
        ("order_id" = String, Path, description = "The authorization's order id"),
        ("Idempotency-Key" = String, Header, description = "1-50 of A-Z a-z 0-9 . _ : -"),
    ),
    request_body = AmountRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Captured", body = Capture),
        (status = 402, description = "Declined", body = problem::Problem, content_type = "application/problem+json"),
        (status = 400, description = "No or a bad Idempotency-Key, or not JSON", body = problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same key is in flight", body = problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid, or the key reused for a different request", body = problem::Problem, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    )
)]
pub async fn capture(
    context: Data<HttpContext>,
    request: HttpRequest,
    order_id: Path<String>,
    payload: Payload,
) -> HttpResponse {
    finish(close(&context, &request, &order_id, Some(payload)).await)
}

/// Release the whole hold of an authorization.
#[utoipa::path(
    post, path = "/v1/payments/{order_id}/void", tag = "payments",
    params(
        ("order_id" = String, Path, description = "The authorization's order id"),
        ("Idempotency-Key" = String, Header, description = "1-50 of A-Z a-z 0-9 . _ : -"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Voided", body = Capture),
        (status = 402, description = "Declined", body = problem::Problem, content_type = "application/problem+json"),
        (status = 400, description = "No or a bad Idempotency-Key", body = problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same key is in flight", body = problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The key reused for a different request", body = problem::Problem, content_type = "application/problem+json"),
        Refusals,
    )
)]
pub async fn void(
    context: Data<HttpContext>,
    request: HttpRequest,
    order_id: Path<String>,
) -> HttpResponse {
    finish(close(&context, &request, &order_id, None).await)
}

/// A capture (with a body) or a void (without).
async fn close(
    context: &HttpContext,
    request: &HttpRequest,
    order_id: &str,
    payload: Option<Payload>,
) -> Answer {
    let principal = merchant(context, request)?;
    let order = parse_order(order_id)?;
    let key = idempotency_key(request)?;
    let amount_minor = match payload {
        Some(payload) => {
            let body: AmountRequest = exchange::body(context, payload).await?;
            check_amount(context, body.amount)?;
            Some(body.amount)
        }
        None => None,
    };
    let command = Command::Capture {
        operation: order::operation_id(principal.id, &key),
        authorization: order::payment_id(principal.id, &order),
        amount_minor,
    };
    let response = route(context, request, &principal, command).await?;
    let currency = &context.currency;
    match response {
        Response::Captured(captured) => Ok(captured_answer(order_id, currency, &captured)),
        Response::Voided(voided) => Ok(voided_answer(order_id, currency, &voided)),
        other => Err(failure_of(context, &principal, other)),
    }
}

/// Refund part or all of a payment.
#[utoipa::path(
    post, path = "/v1/payments/{order_id}/refunds", tag = "payments",
    params(
        ("order_id" = String, Path, description = "The payment's order id"),
        ("Idempotency-Key" = String, Header, description = "1-50 of A-Z a-z 0-9 . _ : -"),
    ),
    request_body = AmountRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Refunded", body = Refund),
        (status = 402, description = "Declined", body = problem::Problem, content_type = "application/problem+json"),
        (status = 400, description = "No or a bad Idempotency-Key, or not JSON", body = problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The same key is in flight", body = problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid, or the key reused for a different request", body = problem::Problem, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    )
)]
pub async fn refund(
    context: Data<HttpContext>,
    request: HttpRequest,
    order_id: Path<String>,
    payload: Payload,
) -> HttpResponse {
    finish(give_back(&context, &request, &order_id, payload).await)
}

async fn give_back(
    context: &HttpContext,
    request: &HttpRequest,
    order_id: &str,
    payload: Payload,
) -> Answer {
    let principal = merchant(context, request)?;
    let order = parse_order(order_id)?;
    let key = idempotency_key(request)?;
    let body: AmountRequest = exchange::body(context, payload).await?;
    check_amount(context, body.amount)?;
    let command = Command::Refund {
        refund: order::refund_id(principal.id, &key),
        payment: order::payment_id(principal.id, &order),
        amount_minor: body.amount,
    };
    match route(context, request, &principal, command).await? {
        Response::Refunded(refunded) => Ok(refunded_answer(order_id, &context.currency, &refunded)),
        other => Err(failure_of(context, &principal, other)),
    }
}

/// A card's state and balance.
#[utoipa::path(
    post, path = "/v1/cards/balance", tag = "cards",
    request_body = BalanceQuery,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The card", body = Balance),
        (status = 404, description = "No sold card has this PIN", body = problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a PIN", body = problem::Problem, content_type = "application/problem+json"),
        Refusals, BodyRefusals,
    )
)]
pub async fn balance(
    context: Data<HttpContext>,
    request: HttpRequest,
    payload: Payload,
) -> HttpResponse {
    finish(card_balance(&context, &request, payload).await)
}

async fn card_balance(
    context: &Data<HttpContext>,
    request: &HttpRequest,
    payload: Payload,
) -> Answer {
    let principal = exchange::authenticate(context, request)?;
    // The binary port's role table decides (merchants today).
    exchange::require(&principal, Role::Merchant)?;
    let body: BalanceQuery = exchange::body(context, payload).await?;
    let wire = Request::Balance(BalanceRequest { pin: body.pin });
    match engine(context, request, &principal, wire).await? {
        Response::Balance(balance) => Ok(HttpResponse::Ok().json(Balance {
            state: balance.state.name().to_string(),
            face_value: balance.face_value_minor,
            balance: balance.balance_minor,
            available: balance.available_minor,
            currency: context.currency.clone(),
        })),
        other => Err(failure_of(context, &principal, other)),
    }
}

/// Liveness: the engine answers.
#[utoipa::path(get, path = "/v1/healthz", tag = "meta",
    responses((status = 200, description = "Serving", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".to_string(),
    })
}

/// Anything else: a problem document, not an empty 404.
pub async fn not_found() -> HttpResponse {
    Failure::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint").response()
}

fn merchant(
    context: &HttpContext,
    request: &HttpRequest,
) -> Result<std::sync::Arc<Principal>, Failure> {
    let principal = exchange::authenticate(context, request)?;
    exchange::require(&principal, Role::Merchant)?;
    Ok(principal)
}

fn parse_order(text: &str) -> Result<OrderId, Failure> {
    OrderId::parse(text).map_err(|error| Failure::invalid("invalid-order-id", error.to_string()))
}

fn idempotency_key(request: &HttpRequest) -> Result<OrderId, Failure> {
    let header = request.headers().get("Idempotency-Key").ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "idempotency-key-required",
            "send an Idempotency-Key header",
        )
    })?;
    header
        .to_str()
        .ok()
        .and_then(|text| OrderId::parse(text).ok())
        .ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid-idempotency-key",
                "an Idempotency-Key is 1-50 of A-Z a-z 0-9 . _ : -",
            )
        })
}

fn check_currency(context: &HttpContext, currency: &str) -> Result<(), Failure> {
    if currency == context.currency {
        return Ok(());
    }
    Err(Failure::invalid(
        "invalid-currency",
        format!("amounts are in {}", context.currency),
    ))
}

fn check_amount(context: &HttpContext, amount: u64) -> Result<(), Failure> {
    match amount_refused(amount, &context.gateway.gate.limits) {
        None => Ok(()),
        Some(Action::Reply(Response::Error(error))) => Err(Failure::of_engine(&error, 0)),
        Some(_) => Err(Failure::invalid(
            "invalid-amount",
            "an amount is out of bounds",
        )),
    }
}

/// Validates a binary request as the gateway would, then routes it.
async fn engine(
    context: &Data<HttpContext>,
    request: &HttpRequest,
    principal: &Arc<Principal>,
    wire: Request,
) -> Result<Response, Failure> {
    // Validation reads at most one RocksDB record (an order id's, to refuse
    // a collision): a point read, which never waits behind a group
    // commit's sync, so it runs here as on the binary port, with no hop to
    // another thread. (The order id itself is written in the payment's
    // write-set, by the shard.)
    let action = validated(context, principal, wire);
    match action {
        Action::Route(command) => route(context, request, principal, command).await,
        Action::Reply(response) => Ok(response),
        Action::Batch(_) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a batch from a single request",
        )),
    }
}

/// What the gateway's validation makes of `wire` from `principal`.
fn validated(context: &HttpContext, principal: &Principal, wire: Request) -> Action {
    let gate = &context.gateway.gate;
    let checks = validate::Context {
        limits: &gate.limits,
        hasher: &gate.hasher,
        guard: &gate.guard,
        now_ms: crate::clock::now_ms(),
        storage: Some(&context.gateway.router.storage),
        tokens: None,
    };
    validate::validate(wire, principal, &checks)
}

/// Admits and routes a validated command; its answer. (The lockout was
/// checked by validation for the requests that carry PINs, as on the
/// binary port; captures, voids and refunds carry none.)
async fn route(
    context: &HttpContext,
    request: &HttpRequest,
    principal: &Principal,
    command: Command,
) -> Result<Response, Failure> {
    let mut admitted: Admitted =
        exchange::admit(context, request, principal, context.weight).await?;
    Ok(exchange::ask(context, &mut admitted, command).await)
}

/// The failure an engine's answer other than the expected one means. A
/// lockout's `Retry-After` is what is left of the principal's lock.
fn failure_of(context: &HttpContext, principal: &Principal, response: Response) -> Failure {
    match response {
        Response::Error(error) => {
            let remaining_s = match context
                .gateway
                .gate
                .guard
                .check(principal.id, crate::clock::now_ms())
            {
                Err(locked) => locked.remaining.as_secs() + 1,
                Ok(()) => exchange::lockout_s(context),
            };
            Failure::of_engine(&error, remaining_s)
        }
        other => {
            tracing::error!(kind = other.kind(), "HTTP: an unexpected answer");
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an unexpected answer",
            )
        }
    }
}

fn last4(pin_last4: u16) -> String {
    format!("{pin_last4:04}")
}

fn with_replay(mut builder: HttpResponseBuilder, replayed: bool) -> HttpResponseBuilder {
    if replayed {
        builder.insert_header(("Idempotent-Replayed", "true"));
    }
    builder
}

/// An operation's answer: `success` with `body`, or, declined, a 402
/// problem carrying it; either marked when it is a replay.
fn answer<T: Serialize>(
    success: HttpResponseBuilder,
    body: &T,
    reason: Option<DeclineReason>,
    replayed: bool,
) -> HttpResponse {
    match reason {
        None => with_replay(success, replayed).json(body),
        Some(reason) => problem::declined(reason, to_value(body), replayed),
    }
}

/// `done` unless declined.
fn status_of(reason: Option<DeclineReason>, done: &str) -> String {
    reason.map_or(done, |_| "declined").to_string()
}

fn reason_of(reason: Option<DeclineReason>) -> Option<String> {
    reason.map(|reason| reason.name().to_string())
}

/// Each card's part, from (last four digits, amount) pairs.
fn cards(parts: impl Iterator<Item = (u16, u64)>) -> Vec<CardPart> {
    parts
        .map(|(pin_last4, amount)| CardPart {
            pin_last4: last4(pin_last4),
            amount: Some(amount),
        })
        .collect()
}

fn paid_answer(order_id: &str, currency: &str, paid: &PayResponse) -> HttpResponse {
    let payment = Payment {
        order_id: order_id.to_string(),
        kind: "payment".to_string(),
        status: status_of(paid.reason(), "approved"),
        reason: reason_of(paid.reason()),
        amount: paid.amount_minor,
        currency: currency.to_string(),
        taken: paid.parts().iter().map(|part| part.taken_minor).sum(),
        refunded: 0,
        cards: cards(paid.parts().iter().map(|p| (p.pin_last4, p.taken_minor))),
        expires_at_ms: None,
    };
    answer(
        HttpResponse::Created(),
        &payment,
        paid.reason(),
        paid.replayed,
    )
}

fn held_answer(order_id: &str, currency: &str, held: &AuthorizeResponse) -> HttpResponse {
    let payment = Payment {
        order_id: order_id.to_string(),
        kind: "authorization".to_string(),
        status: status_of(held.reason, "authorized"),
        reason: reason_of(held.reason),
        amount: held.amount_minor,
        currency: currency.to_string(),
        taken: 0,
        refunded: 0,
        cards: cards(held.parts.iter().map(|p| (p.pin_last4, p.held_minor))),
        expires_at_ms: (held.expires_at_ms > 0).then_some(held.expires_at_ms),
    };
    answer(
        HttpResponse::Created(),
        &payment,
        held.reason,
        held.replayed,
    )
}

fn captured_answer(order_id: &str, currency: &str, captured: &CaptureResponse) -> HttpResponse {
    let body = Capture {
        order_id: order_id.to_string(),
        status: status_of(captured.reason, "captured"),
        reason: reason_of(captured.reason),
        amount: captured.amount_minor,
        released: captured.released_minor,
        currency: currency.to_string(),
        cards: cards(captured.parts.iter().map(|p| (p.pin_last4, p.taken_minor))),
    };
    answer(
        HttpResponse::Ok(),
        &body,
        captured.reason,
        captured.replayed,
    )
}

fn voided_answer(order_id: &str, currency: &str, voided: &VoidResponse) -> HttpResponse {
    let body = Capture {
        order_id: order_id.to_string(),
        status: status_of(voided.reason, "voided"),
        reason: reason_of(voided.reason),
        amount: 0,
        released: voided.released_minor,
        currency: currency.to_string(),
        cards: Vec::new(),
    };
    answer(HttpResponse::Ok(), &body, voided.reason, voided.replayed)
}

fn refunded_answer(order_id: &str, currency: &str, refunded: &RefundResponse) -> HttpResponse {
    let body = Refund {
        order_id: order_id.to_string(),
        status: status_of(refunded.reason, "refunded"),
        reason: reason_of(refunded.reason),
        amount: refunded.amount_minor,
        refunded_total: refunded.payment_refunded_minor,
        currency: currency.to_string(),
        cards: cards(
            refunded
                .parts
                .iter()
                .map(|p| (p.pin_last4, p.refunded_minor)),
        ),
    };
    answer(
        HttpResponse::Created(),
        &body,
        refunded.reason,
        refunded.replayed,
    )
}

fn payment_of_info(info: &OrderInfo, currency: &str) -> Payment {
    let status = match info.status {
        OrderStatus::Approved => "approved",
        OrderStatus::Declined => "declined",
        OrderStatus::Authorized => "authorized",
    };
    Payment {
        order_id: info.order_id.clone(),
        kind: if info.authorization {
            "authorization"
        } else {
            "payment"
        }
        .to_string(),
        status: status.to_string(),
        reason: reason_of(info.reason),
        amount: info.amount_minor,
        currency: currency.to_string(),
        taken: info.taken_minor,
        refunded: info.refunded_minor,
        cards: info
            .pins_last4
            .iter()
            .map(|pin_last4| CardPart {
                pin_last4: last4(*pin_last4),
                amount: None,
            })
            .collect(),
        expires_at_ms: (info.expires_at_ms > 0).then_some(info.expires_at_ms),
    }
}

fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
