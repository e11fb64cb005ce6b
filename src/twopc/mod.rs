//! Two-phase commit for payments whose cards live on different shards.
//!
//! * [`decision`]: the coordinator's logic, pure: participants, votes in,
//!   decision out, what each shard is told in phase two.
//! * [`recovery`]: at start, resolves every hold a crash left behind from
//!   the durable decision log (no decision means abort).
//! * [`crashpoint`]: named places where a test can make the process die, to
//!   prove the recovery rules.
//!
//! The operations that run this protocol over the shards (a payment, an
//! authorization and its capture or void, a refund) are in
//! `src/operation/`; the shards' side (holds) is in
//! [`crate::state_machine`].
//! `docs/DESIGN.md` explains the protocol, its records and its recovery
//! rules in prose.

pub mod crashpoint;
mod decision;
pub(crate) mod recovery;

pub use decision::{Participant, PhaseTwo, TwoPhase};
pub use recovery::Recovered;
