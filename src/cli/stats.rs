//! `kessai stats`: group-commit figures and memory, per shard.

use super::ClientArgs;
use super::output::{Failure, Output};
use crate::client::Client;
use crate::protocol::StatsResponse;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(client: &Client) -> Result<Output, Failure> {
    Ok(render(&client.stats().await?))
}

fn render(stats: &StatsResponse) -> Output {
    let mut text = String::from(
        "shard      cards  B/card   batches        ops  batch p50/p99/max  sync us p50/p99\n",
    );
    for s in &stats.shards {
        text += &format!(
            "{:>5} {:>10} {:>7} {:>9} {:>10}  {:>5}/{:>5}/{:>5}  {:>7}/{:>7}\n",
            s.shard,
            s.cards,
            s.card_map_bytes.checked_div(s.cards).unwrap_or(0),
            s.batches,
            s.ops,
            s.batch_ops_p50,
            s.batch_ops_p99,
            s.batch_ops_max,
            s.sync_us_p50,
            s.sync_us_p99
        );
    }
    let shards: Vec<_> = stats
        .shards
        .iter()
        .map(|s| {
            json!({
                "shard": s.shard,
                "cards": s.cards,
                "card_map_bytes": s.card_map_bytes,
                "batches": s.batches,
                "ops": s.ops,
                "batch_ops_p50": s.batch_ops_p50,
                "batch_ops_p99": s.batch_ops_p99,
                "batch_ops_max": s.batch_ops_max,
                "sync_us_p50": s.sync_us_p50,
                "sync_us_p99": s.sync_us_p99,
            })
        })
        .collect();
    Output::ok(json!({ "shards": shards }), text)
}
