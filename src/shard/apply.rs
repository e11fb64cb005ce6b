//! The one handler for every [`ShardOp`]: the state machine applies it
//! ([`ShardMachine::apply`](crate::state_machine::ShardMachine::apply)),
//! its changes join the pending batch, and its answer leaves when that
//! batch is durable (or at once, for what changes nothing that a later
//! answer could depend on: audit steps and counters).

use super::Shard;
use super::messages::Ask;
use super::writer::Delivery;
use crate::state_machine::{Applied, Env, ShardAnswer, ShardOp};
use actix::prelude::*;

impl Handler<Ask> for Shard {
    type Result = ();

    fn handle(&mut self, ask: Ask, _ctx: &mut Context<Self>) {
        // The mailbox slot goes back when this handler returns.
        let Ask { op, done, _slot } = ask;
        match self.apply(op) {
            Applied::Now(answer) => drop(done.send(answer)),
            Applied::WhenDurable { ops, answer } => {
                self.deliver_when_durable(ops, Delivery::Answer(done, answer))
            }
        }
    }
}

impl Shard {
    fn apply(&mut self, op: ShardOp) -> Applied {
        if let ShardOp::Stats = op {
            // The writer's group-commit figures live with the actor.
            return Applied::Now(ShardAnswer::Stats(self.stats()));
        }
        let claims = &self.services.claims;
        let in_flight = |payment| claims.is_in_flight(payment);
        let env = Env {
            now_ms: crate::clock::now_ms(),
            guard: &self.services.guard,
            card_validity_days: self.services.card_validity_days,
            in_flight: &in_flight,
        };
        self.machine.apply(op, &env, &mut self.pending.changes)
    }

    fn stats(&self) -> crate::protocol::ShardStats {
        let stats = self.stats.lock().map(|s| {
            s.snapshot(
                self.machine.id(),
                self.machine.card_count() as u64,
                self.machine.card_bytes(),
            )
        });
        stats.unwrap_or_default()
    }
}
