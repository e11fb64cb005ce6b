//! Two-phase commit for payments whose cards live on different shards.
//!
//! * [`decision`]: the coordinator's logic, pure: participants, votes in,
//!   decision out, what each shard is told in phase two.
//! * [`coordinator`]: drives one payment over the real shards: prepare,
//!   decide, make the decision durable, then commit or abort everywhere.
//! * [`recovery`]: at start, resolves every hold a crash left behind from
//!   the durable decision log (no decision means abort).
//! * [`crashpoint`]: named places where a test can make the process die, to
//!   prove the recovery rules.
//! * [`authorization`]: authorizations, payments whose decision waits:
//!   phase one now, phase two at capture, void, or release at their
//!   deadline.
//! * [`refund`]: refunds, whose credits reach every shard of a payment
//!   atomically (a decision record, then the credits; the same crash
//!   points and recovery).
//!
//! The shards' side (holds) is in [`crate::state_machine`].
//! `docs/DESIGN.md` explains the protocol, its records and its recovery
//! rules in prose.

mod coordinator;
pub mod crashpoint;
mod decision;
pub(crate) mod recovery;
pub mod refund;

pub(crate) use coordinator::Coordinator;
pub mod authorization;
pub use decision::{Participant, PhaseTwo, TwoPhase};
pub use recovery::Recovered;
