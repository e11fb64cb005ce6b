//! Concurrent [`Client::pay`] calls gathered into PayBatch frames (see
//! [`Client::gather_payments`]).

use super::{Client, ClientError, unexpected};
use crate::protocol::{PayBatchRequest, PayRequest, PayResponse, PayResult, Request, Response};
use std::collections::HashSet;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Concurrent [`Client::pay`] calls gathered into PayBatch frames.
///
/// The first caller to find nothing gathered leads: it yields once, so the
/// other tasks that are ready can add their payments, then sends everything
/// gathered (at most `batch_max` a frame) and goes back to waiting for its
/// own answer like the rest. Calls that arrive meanwhile gather for the
/// next frame. Under light load a payment goes alone, as a plain Pay; under
/// heavy load the frames fill by themselves, with no timer.
pub(super) struct Gathering {
    batch_max: usize,
    pending: Mutex<Gathered>,
}

#[derive(Default)]
struct Gathered {
    payments: Vec<PayRequest>,
    /// Their request ids, so a call can tell in O(1) whether its id is
    /// already waiting.
    request_ids: HashSet<u64>,
    answers: Vec<oneshot::Sender<Result<PayResponse, ClientError>>>,
    /// A caller is about to send what has gathered.
    led: bool,
}

/// The most payments [`Client::gather_payments`] puts in one frame: at the
/// engine's default limits even sixteen-card payments' replies fit.
pub const GATHER_BATCH_MAX: usize = 512;

impl Client {
    /// From now on, concurrent [`Client::pay`] calls go out together in
    /// PayBatch frames of up to `batch_max` payments (at most
    /// [`GATHER_BATCH_MAX`]). Each call still gets exactly its own answer.
    pub fn gather_payments(mut self, batch_max: usize) -> Client {
        self.gathering = Some(Gathering {
            batch_max: batch_max.clamp(1, GATHER_BATCH_MAX),
            pending: Mutex::new(Gathered::default()),
        });
        self
    }

    pub(super) async fn pay_gathered(
        &self,
        gathering: &Gathering,
        payment: PayRequest,
    ) -> Result<PayResponse, ClientError> {
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut gathered = gathering.pending.lock().expect("gathering lock");
            if !gathered.request_ids.insert(payment.request_id) {
                Err(payment)
            } else {
                gathered.payments.push(payment);
                gathered.answers.push(answer);
                Ok(!std::mem::replace(&mut gathered.led, true))
            }
        };
        let lead = match lead {
            Ok(lead) => lead,
            // The same request id twice in one batch would be refused;
            // alone, it is answered as a retry would be.
            Err(payment) => return pay_result(self.call(&Request::Pay(payment)).await),
        };
        if lead {
            tokio::task::yield_now().await;
            self.send_gathered(gathering).await;
        }
        answered.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends everything gathered, a frame at a time; a task per frame hands
    /// out the answers.
    async fn send_gathered(&self, gathering: &Gathering) {
        loop {
            let (mut payments, answers) = {
                let mut gathered = gathering.pending.lock().expect("gathering lock");
                if gathered.payments.is_empty() {
                    gathered.led = false;
                    return;
                }
                let take = gathered.payments.len().min(gathering.batch_max);
                let payments: Vec<PayRequest> = gathered.payments.drain(..take).collect();
                for payment in &payments {
                    gathered.request_ids.remove(&payment.request_id);
                }
                let answers: Vec<_> = gathered.answers.drain(..take).collect();
                (payments, answers)
            };
            let request = if payments.len() == 1 {
                Request::Pay(payments.pop().expect("one"))
            } else {
                Request::PayBatch(PayBatchRequest { payments })
            };
            let reply = self.send(&request).await;
            tokio::spawn(hand_out(reply, answers));
        }
    }
}

/// A payment's answer from the reply to a Pay.
pub(super) fn pay_result(reply: Result<Response, ClientError>) -> Result<PayResponse, ClientError> {
    match reply? {
        Response::Paid(paid) => Ok(paid),
        Response::Error(error) => Err(ClientError::Server(error)),
        other => Err(unexpected(other)),
    }
}

/// Gives each gathered payment its answer from the reply to its frame: a
/// result each from a PayBatch; the same error to all when the batch was
/// refused whole (`busy`, say, when nothing was done).
async fn hand_out(
    reply: Result<oneshot::Receiver<Response>, ClientError>,
    answers: Vec<oneshot::Sender<Result<PayResponse, ClientError>>>,
) {
    let response = match reply {
        Ok(receiver) => receiver.await.map_err(|_| ClientError::Closed),
        Err(error) => Err(error),
    };
    let results: Vec<Result<PayResponse, ClientError>> = match response {
        Ok(Response::PaidBatch(batch)) if batch.results.len() == answers.len() => batch
            .results
            .into_iter()
            .map(|result| match result {
                PayResult::Paid(paid) => Ok(paid),
                PayResult::Error(error) => Err(ClientError::Server(error)),
            })
            .collect(),
        Ok(Response::PaidBatch(batch)) => {
            let message = format!(
                "{} results for {} payments",
                batch.results.len(),
                answers.len()
            );
            vec![Err(ClientError::Unexpected(message)); answers.len()]
        }
        reply => vec![pay_result(reply); answers.len()],
    };
    for (answer, result) in answers.into_iter().zip(results) {
        let _ = answer.send(result);
    }
}
