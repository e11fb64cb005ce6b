//! A card's life: issued (operator), sold and reversed (store HQ), and its
//! balance.

use super::{Client, ClientError, unexpected};
use crate::protocol::{
    ActivateRequest, ActivateResponse, BalanceRequest, BalanceResponse, IssueRequest,
    IssueResponse, Request, Response, ReverseActivationRequest, ReverseActivationResponse,
};

impl Client {
    pub async fn issue(
        &self,
        count: u32,
        face_value_minor: u64,
    ) -> Result<IssueResponse, ClientError> {
        let request = Request::Issue(IssueRequest {
            count,
            face_value_minor,
        });
        match self.call_ok(&request).await? {
            Response::Issued(issued) => Ok(issued),
            other => Err(unexpected(other)),
        }
    }

    pub async fn activate(
        &self,
        store_id: u32,
        pos_ref: u64,
        pins: &[String],
    ) -> Result<ActivateResponse, ClientError> {
        let request = Request::Activate(ActivateRequest {
            store_id,
            pos_ref,
            pins: pins.to_vec(),
        });
        match self.call_ok(&request).await? {
            Response::Activated(activated) => Ok(activated),
            other => Err(unexpected(other)),
        }
    }

    /// Reverses the sale (`store_id`, `pos_ref`) of the card `pin` (store
    /// HQ). The sale is the idempotency key: a retry gets the first outcome
    /// with `replayed` set, so it is safe to resend after a timeout.
    pub async fn reverse_activation(
        &self,
        store_id: u32,
        pos_ref: u64,
        pin: &str,
    ) -> Result<ReverseActivationResponse, ClientError> {
        let request = Request::ReverseActivation(ReverseActivationRequest {
            store_id,
            pos_ref,
            pin: pin.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::ActivationReversed(reversed) => Ok(reversed),
            other => Err(unexpected(other)),
        }
    }

    pub async fn balance(&self, pin: &str) -> Result<BalanceResponse, ClientError> {
        let request = Request::Balance(BalanceRequest {
            pin: pin.to_string(),
        });
        match self.call_ok(&request).await? {
            Response::Balance(balance) => Ok(balance),
            other => Err(unexpected(other)),
        }
    }
}
