//! `kessai serve`: run the engine.

use crate::config::{Config, Overrides};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (overrides the config).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (overrides the config).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of card shards (overrides the config).
    #[arg(long)]
    shards: Option<usize>,
    /// Serve Prometheus metrics over HTTP here (overrides the config).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain: with --tls-key, serve over TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            data_dir: self.data_dir.clone(),
            shards: self.shards,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

pub fn run(config: Config) -> i32 {
    match crate::engine::serve(config) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("kessai: {message}");
            1
        }
    }
}
