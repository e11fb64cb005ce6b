//! Payments and authorizations named by the merchant's order id, and the
//! lookup of one by it: the order id checked, the payment checked exactly
//! as one named by a request id, and refused when it collides with another
//! order id already recorded; the order id then travels with the payment
//! and is written in the payment's own write-set.

use super::pay::checked_as;
use super::{Action, Context, reject};
use crate::auth::Principal;
use crate::order::{self, OrderId};
use crate::protocol::{
    ErrorCode, OrderLookupRequest, OrderLookupResponse, OrderPayRequest, Response,
};
use crate::router::Command;

/// An order payment (`authorize`: an order authorization).
pub(super) fn pay(
    body: &OrderPayRequest,
    principal: &Principal,
    context: &Context<'_>,
    authorize: bool,
) -> Action {
    let order = match OrderId::parse(&body.order_id) {
        Ok(order) => order,
        Err(error) => return reject(ErrorCode::InvalidArgument, error.to_string()),
    };
    let id = order::payment_id(principal.id, &order);
    let payment = match checked_as(id, body.amount_minor, &body.pins, principal, context) {
        Ok(payment) => payment,
        Err(refusal) => return *refusal,
    };
    let Some(storage) = context.storage else {
        return reject(ErrorCode::Internal, "order ids are not kept here".into());
    };
    if let Err(refusal) = order::check_not_colliding(storage, id, &order) {
        return Action::Reply(Response::Error(refusal));
    }
    Action::Route(if authorize {
        Command::Authorize {
            authorization: payment.id,
            amount_minor: payment.amount_minor,
            cards: payment.cards,
            order_id: Some(order),
        }
    } else {
        Command::Pay {
            payment: payment.id,
            amount_minor: payment.amount_minor,
            cards: payment.cards,
            order_id: Some(order),
        }
    })
}

/// The merchant's own payment under an order id, answered from storage.
pub(super) fn lookup(
    body: &OrderLookupRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    let order = match OrderId::parse(&body.order_id) {
        Ok(order) => order,
        Err(error) => return reject(ErrorCode::InvalidArgument, error.to_string()),
    };
    let Some(storage) = context.storage else {
        return reject(ErrorCode::Internal, "order ids are not kept here".into());
    };
    match order::lookup(storage, principal.id, &order) {
        Ok(order) => Action::Reply(Response::Order(OrderLookupResponse { order })),
        Err(error) => Action::Reply(Response::Error(error)),
    }
}
