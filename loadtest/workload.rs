//! One operation of the load: take the next request id, pick its kind from
//! the mix and its card(s) from the id, send it, and say how it ended.
//! Both the closed and the open loop send their requests through here, so
//! they put the same work on the engine.

use crate::mix::{Mix, OpKind};
use crate::record::Outcome;
use kessai::client::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Workload {
    /// The activated cards, shuffled (see `prepare_cards`).
    pub pins: Arc<Vec<String>>,
    pub mix: Mix,
    pub amount_minor: u64,
    /// Request ids unique across runs and connections.
    next_request: AtomicU64,
}

impl Workload {
    pub fn new(pins: Vec<String>, mix: Mix, amount_minor: u64) -> Workload {
        // Any base would do (each harness registers a merchant of its own,
        // and request ids are per merchant); a time-based one keeps ids
        // apart even between harnesses that shared a merchant.
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
            << 8;
        Workload {
            pins: Arc::new(pins),
            mix,
            amount_minor,
            next_request: AtomicU64::new(base),
        }
    }

    /// Sends one operation on `client`; `chosen` is the caller's reusable
    /// buffer for the PINs of a payment.
    pub async fn one(&self, client: &Client, chosen: &mut Vec<String>) -> (OpKind, Outcome) {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let kind = self.mix.kind_of(request_id);
        // The card is a hash of the id (not the id itself), so consecutive
        // ids, which run on different lanes at the same moment, spread over
        // the shards instead of queueing on one.
        let first =
            (request_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % self.pins.len();
        if kind == OpKind::Balance {
            let outcome = match client.balance(&self.pins[first]).await {
                Ok(_) => Outcome::Answered,
                Err(error) => Outcome::failed(&error),
            };
            return (kind, outcome);
        }
        chosen.clear();
        chosen.push(self.pins[first].clone());
        if kind == OpKind::Pay2 {
            // main() refuses a two-card share with fewer than 2 cards.
            chosen.push(self.pins[(first + 1) % self.pins.len()].clone());
        }
        let outcome = match client.pay(request_id, self.amount_minor, chosen).await {
            Ok(paid) if paid.is_approved() => Outcome::Approved,
            Ok(paid) => Outcome::Declined(paid.reason().map_or("unspecified", |r| r.name())),
            Err(error) => Outcome::failed(&error),
        };
        (kind, outcome)
    }
}
