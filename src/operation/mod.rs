//! Operations that take several steps over several shards, each written
//! once, as a pure step machine, and run by one driver.
//!
//! An operation ([`Operation`]) never awaits and never touches a shard: it
//! says what to ask next ([`Step::Ask`]: one round of [`ShardOp`]s, sent at
//! once), takes the answers one by one as they arrive, says when it passes
//! a crash point ([`Step::Reached`]) and, at the end, its reply
//! ([`Step::Done`]). Whoever holds it decides how the asks travel:
//!
//! * [`drive`] runs it over the real shard actors: the round's asks
//!   through [`crate::shard::Shards::ask`], the answers as they come, the
//!   prepare timeout, the armed crash point;
//! * `tests/simulation.rs` runs the same step machines over simulated
//!   shards, delivering every ask and answer in a random order, timing
//!   rounds out and crashing at random, so the orchestration the engine
//!   runs is the one the simulation checks.
//!
//! Two step machines make every operation:
//! * [`Prepared`]: a prepare round on every shard holding some of the
//!   cards, then the two-phase decision; what follows is built from the
//!   decision: [`pay`] (a payment across shards), [`authorize`] (an
//!   authorization);
//! * [`Decided`]: an outcome already decided: record it on its home shard,
//!   then tell every shard, then reply. A payment's and an
//!   authorization's second half; a refund ([`refund::credit`]); a
//!   capture, void or release of an authorization
//!   ([`authorization::close_holds`]); a remittance's record, after its
//!   round of reads ([`remit::Remit`]).
//!
//! What stays outside them is what needs the engine's shared state: the
//! claim of the request id, the replay of a recorded outcome and the reads
//! a decision needs, which [`Coordinator`] does before it starts a step
//! machine ([`coordinator`], [`authorization`], [`refund`]). The pure
//! two-phase decision ([`crate::twopc::TwoPhase`]) and the recovery from
//! the durable records stay in [`crate::twopc`].

pub mod authorization;
mod authorize;
pub(crate) mod blocking;
pub(crate) mod coordinator;
mod decided;
mod driver;
mod pay;
mod prepared;
pub mod refund;
pub mod remit;

pub use crate::shard::{ShardAnswer, ShardOp};
pub use authorize::{Authorize, authorize};
pub(crate) use coordinator::Coordinator;
pub use decided::Decided;
pub use driver::drive;
pub use pay::{Pay, pay};
pub use prepared::{Prepared, Rules, Then};

use crate::ids::ShardId;
use crate::twopc::crashpoint::CrashPoint;

/// What a step machine wants next.
#[derive(Debug)]
pub enum Step<R> {
    /// Ask each shard its operation, all at once (one round). The answers
    /// come back through [`Operation::on_answer`], each with its index in
    /// this round, in any order. With `timed`, the round ends early
    /// ([`Operation::on_timeout`]) if its answers do not all arrive within
    /// the prepare timeout; answers still to come are then dropped.
    Ask {
        asks: Vec<(ShardId, ShardOp)>,
        timed: bool,
    },
    /// More answers of this round to come.
    Wait,
    /// The operation passed this crash point; continue with
    /// [`Operation::resume`].
    Reached(CrashPoint),
    /// Finished, with the reply.
    Done(R),
}

/// One multi-step operation, pure: it only reacts.
pub trait Operation {
    type Reply;

    /// The first step.
    fn start(&mut self, now_ms: u64) -> Step<Self::Reply>;

    /// Answer `index` of the current round.
    fn on_answer(&mut self, index: usize, answer: ShardAnswer, now_ms: u64) -> Step<Self::Reply>;

    /// A timed round's answers did not all arrive in time.
    fn on_timeout(&mut self, now_ms: u64) -> Step<Self::Reply>;

    /// After [`Step::Reached`].
    fn resume(&mut self, now_ms: u64) -> Step<Self::Reply>;
}

/// Counts a round's answers.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    expected: usize,
    answered: usize,
}

impl Round {
    fn of(expected: usize) -> Round {
        Round {
            expected,
            answered: 0,
        }
    }

    /// Counts one answer; true if it was the first.
    fn answer(&mut self) -> bool {
        assert!(self.answered < self.expected, "one answer per ask");
        self.answered += 1;
        self.answered == 1
    }

    fn complete(&self) -> bool {
        self.answered == self.expected
    }
}

/// The one answer a recording or phase-two ask gets. Kept in production:
/// a shard that answers with another kind is a bug, and nothing after it
/// is safe.
fn expect_done(answer: ShardAnswer) {
    assert!(
        matches!(answer, ShardAnswer::Done),
        "a shard answers each operation in its own kind: {answer:?}"
    );
}
