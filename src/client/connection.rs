//! Connecting (over TLS if asked, authenticating if given a key), the
//! call, and the two tasks under it: the writer, which gathers queued
//! frames into one syscall, and the reader, which hands each response to
//! the call waiting for it.

use super::{Client, ClientError, unexpected};
use crate::auth::{self, Key};
use crate::config::FRAME_BYTES_MAX;
use crate::protocol::frame::FrameBuffer;
use crate::protocol::{AuthHello, AuthProof, AuthWelcome, ErrorCode, Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Requests queued towards the socket before callers wait.
const SEND_QUEUE_DEPTH: usize = 4096;
/// Free space kept in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Calls waiting for their response, by correlation id.
#[derive(Default)]
pub(super) struct Waiting {
    calls: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    /// Set (before `calls` is emptied) when the connection is gone, so a
    /// call that registers late does not wait forever.
    closed: std::sync::atomic::AtomicBool,
}

impl Waiting {
    /// Hands `response` to the call waiting for `correlation_id`. A reply
    /// with correlation 0 is a connection-level error (framing violation,
    /// overload): every waiting call gets it.
    fn answer(&self, correlation_id: u64, response: Response) {
        let mut calls = self.calls.lock().expect("waiter map lock");
        if let Some(waiter) = calls.remove(&correlation_id) {
            drop(calls);
            let _ = waiter.send(response);
        } else if correlation_id == 0 {
            let all: Vec<_> = calls.drain().collect();
            drop(calls);
            for (_, waiter) in all {
                let _ = waiter.send(response.clone());
            }
        }
    }
}

pub(super) type Waiters = Arc<Waiting>;

/// TLS towards the engine: the CA to trust and the name to verify. There
/// is no way to skip verification.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// Trusts the certificates in the PEM file `ca_path`. The engine's
    /// certificate must name `server_name`, or (when it is `None`) the IP
    /// address connected to.
    pub fn from_ca_file(ca_path: &Path, server_name: Option<&str>) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_path)
            .map_err(|e| format!("tls CA {}: {e}", ca_path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("tls CA {}: {e}", ca_path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls CA {}: {e}", ca_path.display()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_string())
                    .map_err(|e| format!("TLS server name {name:?}: {e}"))
            })
            .transpose()?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// How to reach an engine and who to be there.
#[derive(Clone, Default)]
pub struct Connect {
    /// The principal's key; without one the connection stays
    /// unauthenticated (and every request is refused).
    pub key: Option<Key>,
    pub tls: Option<TlsClient>,
}

impl Client {
    /// Connects without authenticating; must be called inside a tokio
    /// runtime.
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        Client::connect_with(addr, &Connect::default()).await
    }

    /// Connects and authenticates as `key`'s principal.
    pub async fn connect_as(addr: SocketAddr, key: &Key) -> Result<Client, ClientError> {
        let options = Connect {
            key: Some(key.clone()),
            tls: None,
        };
        Client::connect_with(addr, &options).await
    }

    /// Connects (over TLS if asked) and authenticates (if given a key).
    pub async fn connect_with(addr: SocketAddr, options: &Connect) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::Io(format!("{addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let client = match &options.tls {
            None => {
                let (reader, writer) = stream.into_split();
                Client::start(reader, writer)
            }
            Some(tls) => {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| ClientError::Io(format!("TLS with {addr}: {e}")))?;
                let (reader, writer) = tokio::io::split(stream);
                Client::start(reader, writer)
            }
        };
        if let Some(key) = &options.key {
            client.authenticate(key).await?;
        }
        Ok(client)
    }

    fn start<R, W>(reader: R, writer: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let waiters: Waiters = Arc::new(Waiting::default());
        let (queue, queued) = mpsc::channel::<Vec<u8>>(SEND_QUEUE_DEPTH);
        tokio::spawn(write_loop(writer, queued));
        tokio::spawn(read_loop(reader, waiters.clone()));
        Client {
            queue,
            waiters,
            next_correlation_id: AtomicU64::new(1),
            gathering: None,
        }
    }

    /// The handshake: proves `key` without sending its secret.
    pub async fn authenticate(&self, key: &Key) -> Result<AuthWelcome, ClientError> {
        let client_nonce = auth::keys::nonce();
        let hello = Request::AuthHello(AuthHello {
            principal: key.principal,
            client_nonce,
        });
        let server_nonce = match self.call_ok(&hello).await? {
            Response::Challenge(challenge) => challenge.server_nonce,
            other => return Err(unexpected(other)),
        };
        let proof = Request::AuthProof(AuthProof {
            proof: key.proof(&client_nonce, &server_nonce),
        });
        match self.call_ok(&proof).await? {
            Response::Welcome(welcome) => Ok(welcome),
            other => Err(unexpected(other)),
        }
    }

    /// Sends one request and waits for its response (error frames included).
    pub async fn call(&self, request: &Request) -> Result<Response, ClientError> {
        let answer = self.send(request).await?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// Sends one request; the receiver gets its response.
    pub(super) async fn send(
        &self,
        request: &Request,
    ) -> Result<oneshot::Receiver<Response>, ClientError> {
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::new();
        request
            .encode(&mut bytes, correlation_id, FRAME_BYTES_MAX)
            .map_err(|e| ClientError::Unexpected(format!("cannot encode request: {e:?}")))?;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .calls
            .lock()
            .expect("waiter map lock")
            .insert(correlation_id, tx);
        if self.waiters.closed.load(Ordering::SeqCst) || self.queue.send(bytes).await.is_err() {
            self.waiters
                .calls
                .lock()
                .expect("waiter map lock")
                .remove(&correlation_id);
            return Err(ClientError::Closed);
        }
        Ok(rx)
    }

    /// Like [`Client::call`], but an error frame becomes `Err`.
    pub(super) async fn call_ok(&self, request: &Request) -> Result<Response, ClientError> {
        match self.call(request).await? {
            Response::Error(error) => Err(ClientError::Server(error)),
            response => Ok(response),
        }
    }

    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.call_ok(&Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut queued: mpsc::Receiver<Vec<u8>>) {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(first) = queued.recv().await {
        out.extend_from_slice(&first);
        while out.len() < 256 * 1024 {
            match queued.try_recv() {
                Ok(more) => out.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut reader: R, waiters: Waiters) {
    let mut buffer = FrameBuffer::with_capacity(READ_CHUNK_BYTES);
    'read: loop {
        loop {
            let frame = match buffer.next_frame(FRAME_BYTES_MAX) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let response = Response::decode(frame.kind, frame.body).unwrap_or_else(|e| {
                Response::error(
                    ErrorCode::MalformedFrame,
                    format!("undecodable reply: {}", e.message),
                )
            });
            waiters.answer(frame.correlation_id, response);
        }
        match buffer.fill(&mut reader, READ_CHUNK_BYTES).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Dropping the waiters fails every outstanding call with `Closed`.
    waiters.closed.store(true, Ordering::SeqCst);
    waiters.calls.lock().expect("waiter map lock").clear();
}
