//! The second half of every operation across shards, once its outcome is
//! decided: **record** the decision on its home shard, durably, before any
//! other shard hears of it (crash point `after-decision`), then **tell
//! every shard** what it does (crash point `mid-commit` after the first
//! answer), then reply.
//!
//! A payment's and an authorization's decision comes from their prepare
//! round ([`super::Prepared`]); a refund's, a capture's, a void's and a
//! release's from durable records read before it starts. Whatever a crash
//! leaves between the record and the last shard, recovery finishes from
//! the record ([`crate::twopc::recovery`]).

use super::{Operation, Round, ShardAnswer, ShardOp, Step, expect_done};
use crate::ids::ShardId;
use crate::twopc::crashpoint::CrashPoint;

#[derive(Debug)]
enum State {
    New,
    Recording,
    Recorded,
    Telling(Round),
    Finished,
}

/// A decided operation: its record, what each shard is told, its reply.
#[derive(Debug)]
pub struct Decided<R> {
    /// `None`: a decision that is not recorded (a payment declined for an
    /// invalid card: an abort, which recovery presumes anyway).
    record: Option<(ShardId, ShardOp)>,
    tell: Vec<(ShardId, ShardOp)>,
    reply: Option<R>,
    state: State,
}

impl<R> Decided<R> {
    pub fn new(
        record: Option<(ShardId, ShardOp)>,
        tell: Vec<(ShardId, ShardOp)>,
        reply: R,
    ) -> Self {
        Decided {
            record,
            tell,
            reply: Some(reply),
            state: State::New,
        }
    }

    pub(super) fn is_new(&self) -> bool {
        matches!(self.state, State::New)
    }

    fn finish(&mut self) -> Step<R> {
        self.state = State::Finished;
        Step::Done(self.reply.take().expect("replies once"))
    }
}

impl<R> Operation for Decided<R> {
    type Reply = R;

    fn start(&mut self, _now_ms: u64) -> Step<R> {
        assert!(self.is_new(), "started once");
        match self.record.take() {
            Some(record) => {
                self.state = State::Recording;
                Step::Ask {
                    asks: vec![record],
                    timed: false,
                }
            }
            None => {
                self.state = State::Recorded;
                Step::Reached(CrashPoint::AfterDecision)
            }
        }
    }

    fn on_answer(&mut self, _index: usize, answer: ShardAnswer, _now_ms: u64) -> Step<R> {
        expect_done(answer);
        match &mut self.state {
            State::Recording => {
                self.state = State::Recorded;
                Step::Reached(CrashPoint::AfterDecision)
            }
            State::Telling(round) => {
                if round.answer() {
                    return Step::Reached(CrashPoint::MidCommit);
                }
                if round.complete() {
                    return self.finish();
                }
                Step::Wait
            }
            state => panic!("an answer while {state:?}"),
        }
    }

    fn on_timeout(&mut self, _now_ms: u64) -> Step<R> {
        unreachable!("a decided operation's rounds are not timed")
    }

    fn resume(&mut self, _now_ms: u64) -> Step<R> {
        match &self.state {
            State::Recorded if self.tell.is_empty() => self.finish(),
            State::Recorded => {
                let asks = std::mem::take(&mut self.tell);
                self.state = State::Telling(Round::of(asks.len()));
                Step::Ask { asks, timed: false }
            }
            State::Telling(round) if round.complete() => self.finish(),
            State::Telling(_) => Step::Wait,
            state => panic!("resumed while {state:?}"),
        }
    }
}
