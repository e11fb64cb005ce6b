//! The trust boundary: who may talk to the engine, as what, and how often
//! they may get a PIN wrong.
//!
//! * [`keys`]: key files and the challenge-response handshake (the secret
//!   never crosses the wire; the engine keeps only a derived key).
//! * [`registry`]: the principals and their roles, kept durably.
//! * [`guard`]: the PIN-guessing lockout, per principal.
//! * [`certs`]: the client certificates store HQs connect with over ISO
//!   8583 (mutual TLS), by fingerprint.
//! * [`tokens`]: the bearer tokens of the HTTP API, by hash.
//!
//! | role | may send |
//! |---|---|
//! | operator | Issue, Report, Audit, Stats, principal management |
//! | store HQ | Activate, for its registered stores only |
//! | merchant | Pay and Balance, as itself |
//!
//! Every role may Ping once authenticated.

pub mod certs;
pub mod guard;
pub mod keys;
mod owners;
pub mod registry;
pub mod tokens;

pub use certs::Certs;
pub use guard::{Admission, Guard, LockedOut};
pub use keys::Key;
pub use registry::{Principal, Registry, RegistryError};
pub use tokens::Tokens;
