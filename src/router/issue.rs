//! Issuing: the center makes new cards, worthless until activated.

use super::Partition;
use crate::pin::{Pin, PinHasher};
use crate::protocol::{IssueResponse, Response};
use crate::shard::{NewCard, ShardGone, Shards};

/// Rounds of fresh PINs an issue request tries when a generated PIN is
/// already taken. Collisions are rare (1 in 10^15 per PIN at 16 digits);
/// running out means the PIN space is nearly full.
const ISSUE_ROUNDS_MAX: usize = 8;

/// Makes `count` new cards. PINs are drawn from the OS-seeded CSPRNG; a
/// drawn PIN whose key already exists is replaced by a fresh draw.
pub(super) async fn issue(
    shards: &Shards,
    hasher: &PinHasher,
    pin_digits: usize,
    count: usize,
    face_value_minor: u64,
) -> Result<Response, ShardGone> {
    let mut pins: Vec<String> = Vec::with_capacity(count);
    for _ in 0..ISSUE_ROUNDS_MAX {
        let wanted = count - pins.len();
        if wanted == 0 {
            break;
        }
        let drawn: Vec<Pin> = {
            let mut rng = rand::rng();
            (0..wanted)
                .map(|_| Pin::generate(&mut rng, pin_digits))
                .collect()
        };
        let mut partition = Partition::new(shards.count());
        for (place, pin) in drawn.iter().enumerate() {
            let key = hasher.key(pin);
            let card = NewCard {
                key,
                face_value_minor,
            };
            partition.push(shards.of(&key), place, card);
        }
        let mut answers = Vec::new();
        for (shard, batch) in partition.take_batches() {
            answers.push((shard, shards.insert(shard, batch).await?));
        }
        let mut inserted = vec![false; drawn.len()];
        for (shard, answer) in answers {
            partition.scatter(shard, answer.get().await?, &mut inserted);
        }
        pins.extend(
            drawn
                .iter()
                .zip(inserted)
                .filter(|(_, inserted)| *inserted)
                .map(|(pin, _)| pin.expose().to_string()),
        );
    }
    if pins.len() < count {
        // The cards that were made are real and returned; say why not all.
        tracing::warn!(made = pins.len(), count, "PIN space nearly exhausted");
    }
    Ok(Response::Issued(IssueResponse {
        face_value_minor,
        pins,
    }))
}
