//! ISO 8583:1987 for store HQ switches: the same activations, reversals
//! and balance inquiries as the binary protocol, in the messages POS
//! networks speak (`docs/ISO8583.md` is the reference).
//!
//! * [`codec`]: framing, MTI, bitmaps, the field table.

pub mod codec;
pub mod codes;
pub(crate) mod connection;
pub mod request;
pub(crate) mod server;
pub mod terminals;
pub(crate) mod tls;
