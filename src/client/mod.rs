//! The Rust client: used by the CLI, the tests and the load harness.
//!
//! One TCP connection, pipelined: any number of tasks may call at once; each
//! call gets a fresh correlation id, and a reader task hands every response
//! to the call that waits for it, in whatever order the engine answers. A
//! writer task gathers queued requests and writes them with one syscall,
//! which is what makes pipelining cheap on both ends.
//!
//! * [`connection`]: connecting (TLS, the handshake), the call, and the
//!   reader and writer tasks.
//! * [`gather`]: concurrent payments gathered into PayBatch frames.
//! * [`payments`]: a merchant's payments, authorizations, captures, voids,
//!   refunds and orders.
//! * [`cards`]: a card's life: issued, sold, reversed, its balance.
//! * [`settlement`]: remittances, payouts and statements.
//! * [`admin`]: reports, the audit, stats, principals and their tokens.

mod admin;
mod cards;
mod connection;
mod gather;
mod payments;
mod settlement;

pub use connection::{Connect, TlsClient};
pub use gather::GATHER_BATCH_MAX;

use crate::protocol::{ErrorCode, ErrorResponse, Response};
use connection::Waiters;
use gather::Gathering;
use std::sync::atomic::AtomicU64;
use tokio::sync::mpsc;

/// Lines per report page the client asks for (the engine's default
/// `max_report_lines`).
pub const REPORT_PAGE_LINES: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Could not connect, or the socket failed.
    Io(String),
    /// The connection closed before the answer came.
    Closed,
    /// The engine answered with an error frame.
    Server(ErrorResponse),
    /// The engine answered with something this request does not expect.
    Unexpected(String),
}

impl ClientError {
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(error) => error.error_code(),
            _ => None,
        }
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(message) => write!(f, "connection: {message}"),
            ClientError::Closed => write!(f, "connection closed before the answer"),
            ClientError::Server(error) => {
                let name = error.error_code().map_or("unknown", |c| c.name());
                write!(f, "engine refused ({name}): {}", error.message)
            }
            ClientError::Unexpected(message) => write!(f, "unexpected answer: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

pub struct Client {
    queue: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    next_correlation_id: AtomicU64,
    /// Set by [`Client::gather_payments`].
    gathering: Option<Gathering>,
}

fn unexpected(response: Response) -> ClientError {
    ClientError::Unexpected(format!("{response:?}"))
}
