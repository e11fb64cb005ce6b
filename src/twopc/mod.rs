//! Two-phase commit for payments whose cards live on different shards.
//!
//! * [`coordinator`]: drives one payment: prepare on every shard involved,
//!   decide, make the decision durable, then commit or abort everywhere.
//! * [`recovery`]: at start, resolves every hold a crash left behind from
//!   the durable decision log (no decision means abort).
//! * [`crashpoint`]: named places where a test can make the process die, to
//!   prove the recovery rules.
//!
//! `docs/DESIGN.md` explains the protocol, its records and its recovery
//! rules in prose.

pub mod coordinator;
pub mod crashpoint;
pub mod recovery;
