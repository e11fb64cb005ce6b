//! A merchant's payments, authorizations, captures, voids and refunds, and
//! its orders (payments named by its own order id).

use super::gather::pay_result;
use super::{Client, ClientError, unexpected};
use crate::protocol::{
    AuthorizeRequest, AuthorizeResponse, CaptureRequest, CaptureResponse, OrderInfo,
    OrderLookupRequest, OrderPayRequest, PayBatchRequest, PayRequest, PayResponse, PayResult,
    RefundRequest, RefundResponse, Request, Response, VoidRequest, VoidResponse,
};

impl Client {
    /// Pays the authenticated merchant.
    pub async fn pay(
        &self,
        request_id: u64,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<PayResponse, ClientError> {
        let payment = PayRequest {
            request_id,
            amount_minor,
            pins: pins.to_vec(),
        };
        match &self.gathering {
            Some(gathering) => self.pay_gathered(gathering, payment).await,
            None => pay_result(self.call(&Request::Pay(payment)).await),
        }
    }

    /// Many payments in one frame: one result per payment, in order. Each
    /// is exactly what the payment alone would have got; a refusal of the
    /// whole batch (too many payments, a reply that could not fit a frame,
    /// `busy`) is an error.
    pub async fn pay_batch(
        &self,
        payments: Vec<PayRequest>,
    ) -> Result<Vec<PayResult>, ClientError> {
        let request = Request::PayBatch(PayBatchRequest { payments });
        match self.call_ok(&request).await? {
            Response::PaidBatch(batch) => Ok(batch.results),
            other => Err(unexpected(other)),
        }
    }

    /// Refunds `amount_minor` of the authenticated merchant's payment
    /// `payment_request_id`. `request_id` names the refund (its own
    /// namespace): resending the identical refund replays its answer.
    pub async fn refund(
        &self,
        request_id: u64,
        payment_request_id: u64,
        amount_minor: u64,
    ) -> Result<RefundResponse, ClientError> {
        let request = Request::Refund(RefundRequest {
            request_id,
            payment_request_id,
            amount_minor,
        });
        match self.call_ok(&request).await? {
            Response::Refunded(refunded) => Ok(refunded),
            other => Err(unexpected(other)),
        }
    }

    /// Holds `amount_minor` on the cards (taken in the order given) for the
    /// authenticated merchant. `request_id` names the authorization in the
    /// merchant's payment namespace: once captured it is the payment's
    /// request id. Resending the identical request replays its answer.
    pub async fn authorize(
        &self,
        request_id: u64,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<AuthorizeResponse, ClientError> {
        let request = Request::Authorize(AuthorizeRequest {
            request_id,
            amount_minor,
            pins: pins.to_vec(),
        });
        match self.call_ok(&request).await? {
            Response::Authorized(authorized) => Ok(authorized),
            other => Err(unexpected(other)),
        }
    }

    /// Pays `amount_minor` under the merchant's own `order_id` (see
    /// [`crate::order`]): a retry with the same order id and content
    /// replays the first answer.
    pub async fn pay_order(
        &self,
        order_id: &str,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<PayResponse, ClientError> {
        let request = Request::OrderPay(order_request(order_id, amount_minor, pins));
        match self.call_ok(&request).await? {
            Response::OrderPaid(paid) => Ok(paid),
            other => Err(unexpected(other)),
        }
    }

    /// Authorizes `amount_minor` under the merchant's own `order_id`.
    pub async fn authorize_order(
        &self,
        order_id: &str,
        amount_minor: u64,
        pins: &[String],
    ) -> Result<AuthorizeResponse, ClientError> {
        let request = Request::OrderAuthorize(order_request(order_id, amount_minor, pins));
        match self.call_ok(&request).await? {
            Response::OrderAuthorized(authorized) => Ok(authorized),
            other => Err(unexpected(other)),
        }
    }

    /// The merchant's payment or authorization under `order_id`, if any.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderInfo>, ClientError> {
        let request = Request::OrderLookup(OrderLookupRequest {
            order_id: order_id.to_owned(),
        });
        match self.call_ok(&request).await? {
            Response::Order(found) => Ok(found.order),
            other => Err(unexpected(other)),
        }
    }

    /// Captures `amount_minor` (at most what was authorized) of the
    /// authenticated merchant's authorization `authorization_request_id`
    /// and releases the rest. `request_id` names the capture (the namespace
    /// of captures and voids): resending the identical capture replays its
    /// answer.
    pub async fn capture(
        &self,
        request_id: u64,
        authorization_request_id: u64,
        amount_minor: u64,
    ) -> Result<CaptureResponse, ClientError> {
        let request = Request::Capture(CaptureRequest {
            request_id,
            authorization_request_id,
            amount_minor,
        });
        match self.call_ok(&request).await? {
            Response::Captured(captured) => Ok(captured),
            other => Err(unexpected(other)),
        }
    }

    /// Releases the whole hold of the authenticated merchant's
    /// authorization `authorization_request_id`. `request_id` names the
    /// void (the namespace of captures and voids): resending the identical
    /// void replays its answer.
    pub async fn void(
        &self,
        request_id: u64,
        authorization_request_id: u64,
    ) -> Result<VoidResponse, ClientError> {
        let request = Request::Void(VoidRequest {
            request_id,
            authorization_request_id,
        });
        match self.call_ok(&request).await? {
            Response::Voided(voided) => Ok(voided),
            other => Err(unexpected(other)),
        }
    }
}

fn order_request(order_id: &str, amount_minor: u64, pins: &[String]) -> OrderPayRequest {
    OrderPayRequest {
        order_id: order_id.to_owned(),
        amount_minor,
        pins: pins.to_vec(),
    }
}
