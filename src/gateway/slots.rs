//! Connection slots: how many connections the engine serves, and who may
//! hold them.
//!
//! A connection lives in one of two pools:
//!
//! * **Handshaking** (`max_handshakes`): accepted, not yet authenticated.
//!   Anyone can open one, so this pool is small and never refuses: when it
//!   is full, a handshaking connection is evicted to make room: the oldest
//!   of the address that holds the most. An honest client holds one and
//!   finishes in a round trip or two; an attacker must hold many (from
//!   one address it is always the one evicted) and, to push an honest
//!   handshake out, open connections from more addresses than the pool
//!   holds, or `max_handshakes` of them within that round trip, instead of
//!   merely holding slots until the handshake deadline.
//! * **Serving** (`max_connections`): authenticated. A principal holds at
//!   most `max_connections_per_principal` of them, so one key cannot take
//!   them all, and the last `reserved_operator_connections` are for
//!   operators only, so an operator can always get in to act.
//!
//! A connection moves from the first pool to the second when its proof is
//! accepted ([`Slot::promote`]); refused there, it is closed with
//! `overloaded`. `max_connections_per_peer` counts both pools. Every count
//! is given back when the [`Slot`] drops, however the connection ends.
//!
//! Each principal also has its share of the engine's in-flight bytes
//! (`max_inflight_bytes_per_principal`, see [`Slot::share`]), kept here
//! because its life follows the principal's connections.

use crate::auth::Principal;
use crate::config::Limits;
use crate::protocol::Role;
use crate::telemetry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, Semaphore};

/// Why a connection was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The limit reached (the metric's label, and named in the message).
    pub limit: &'static str,
    pub why: &'static str,
}

impl Refusal {
    fn new(limit: &'static str, why: &'static str) -> Refusal {
        metrics::counter!(telemetry::CONNECTIONS_REFUSED_TOTAL, "limit" => limit).increment(1);
        Refusal { limit, why }
    }
}

/// One principal's connections and its share of the in-flight bytes.
struct Holder {
    connections: usize,
    share: Arc<Semaphore>,
}

#[derive(Default)]
struct Counts {
    by_peer: HashMap<IpAddr, usize>,
    /// Connections in their handshake, by admission order (oldest first),
    /// each with its address and the signal that evicts it.
    handshaking: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    /// The same connections by address, oldest first: whom to evict.
    handshaking_by_peer: HashMap<IpAddr, BTreeSet<u64>>,
    serving: usize,
    by_principal: HashMap<u32, Holder>,
    next_id: u64,
}

impl Counts {
    fn add_handshake(&mut self, id: u64, peer: IpAddr, evicted: Arc<Notify>) {
        self.handshaking.insert(id, (peer, evicted));
        self.handshaking_by_peer.entry(peer).or_default().insert(id);
    }

    /// Takes `id` out of the handshake pool; false if it was not there
    /// (evicted already, or serving).
    fn remove_handshake(&mut self, id: u64) -> bool {
        let Some((peer, _)) = self.handshaking.remove(&id) else {
            return false;
        };
        if let Some(ids) = self.handshaking_by_peer.get_mut(&peer) {
            ids.remove(&id);
            if ids.is_empty() {
                self.handshaking_by_peer.remove(&peer);
            }
        }
        true
    }

    /// Evicts the oldest handshake of the address holding the most (of
    /// equals, the one with the oldest). A scan of at most
    /// `max_handshakes` addresses, at accept only.
    fn evict_one(&mut self) {
        let chosen = self
            .handshaking_by_peer
            .values()
            .filter_map(|ids| ids.first().map(|&oldest| (ids.len(), oldest)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        if let Some((_, id)) = chosen
            && let Some((_, evicted)) = self.handshaking.get(&id).cloned()
        {
            self.remove_handshake(id);
            // It closes itself; its slot returns when it drops (its entry
            // is already gone, so it is not evicted twice).
            evicted.notify_one();
        }
    }
}

/// The engine's connection slots.
pub struct Slots {
    max_handshakes: usize,
    max_serving: usize,
    max_per_peer: usize,
    max_per_principal: usize,
    reserved_operator: usize,
    share_bytes: usize,
    counts: Mutex<Counts>,
}

impl Slots {
    pub fn new(limits: &Limits) -> Arc<Slots> {
        Arc::new(Slots {
            max_handshakes: limits.max_handshakes,
            max_serving: limits.max_connections,
            max_per_peer: limits.max_connections_per_peer,
            max_per_principal: limits.max_connections_per_principal,
            reserved_operator: limits.reserved_operator_connections,
            share_bytes: limits.principal_share_bytes(),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Every update leaves the counts consistent; a panic elsewhere
        // cannot leave them half-changed.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A handshaking slot for a connection just accepted from `peer`,
    /// evicting the oldest handshaking connection when the pool is full.
    /// Refused only past `max_connections_per_peer`.
    pub fn admit(self: &Arc<Slots>, peer: IpAddr) -> Result<Slot, Refusal> {
        let mut counts = self.lock();
        let from_peer = counts.by_peer.get(&peer).copied().unwrap_or(0);
        if from_peer >= self.max_per_peer {
            return Err(Refusal::new(
                "max_connections_per_peer",
                "too many connections from this address",
            ));
        }
        if counts.handshaking.len() >= self.max_handshakes {
            counts.evict_one();
            metrics::counter!(telemetry::CONNECTIONS_REFUSED_TOTAL, "limit" => "max_handshakes")
                .increment(1);
        }
        *counts.by_peer.entry(peer).or_insert(0) += 1;
        let id = counts.next_id;
        counts.next_id += 1;
        let evicted = Arc::new(Notify::new());
        counts.add_handshake(id, peer, evicted.clone());
        metrics::gauge!(telemetry::CONNECTIONS_OPEN).increment(1.0);
        Ok(Slot {
            slots: self.clone(),
            id,
            peer,
            evicted,
            serving: None,
        })
    }

    /// Connections open now, handshaking or serving.
    pub fn open(&self) -> usize {
        let counts = self.lock();
        counts.handshaking.len() + counts.serving
    }

    /// Connections serving `principal` now.
    #[cfg(test)]
    pub fn serving(&self, principal: u32) -> usize {
        self.lock()
            .by_principal
            .get(&principal)
            .map_or(0, |holder| holder.connections)
    }
}

/// A connection's place, given back when it drops.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    peer: IpAddr,
    evicted: Arc<Notify>,
    /// Once authenticated: the principal, and its in-flight share.
    serving: Option<(u32, Arc<Semaphore>)>,
}

impl Slot {
    /// Resolves when the handshake pool evicted this connection (never,
    /// once it is serving).
    pub async fn evicted(&self) {
        if self.serving.is_some() {
            return std::future::pending().await;
        }
        self.evicted.notified().await;
    }

    /// Moves the connection to the serving pool as `principal`, or says
    /// which limit refuses it (the connection is then to be closed).
    pub fn promote(&mut self, principal: &Principal) -> Result<(), Refusal> {
        assert!(self.serving.is_none(), "a connection authenticates once");
        let slots = self.slots.clone();
        let mut counts = slots.lock();
        if !counts.remove_handshake(self.id) {
            // Evicted while its proof was being checked: it is closing.
            return Err(Refusal::new(
                "max_handshakes",
                "evicted from the handshake pool; connect again",
            ));
        }
        let room = match principal.role {
            Role::Operator => slots.max_serving,
            _ => slots.max_serving - slots.reserved_operator,
        };
        let held = counts
            .by_principal
            .get(&principal.id)
            .map_or(0, |holder| holder.connections);
        let refusal = if counts.serving >= room {
            Some(Refusal::new(
                "max_connections",
                "the engine serves as many connections as it may",
            ))
        } else if held >= slots.max_per_principal {
            Some(Refusal::new(
                "max_connections_per_principal",
                "this principal holds as many connections as it may",
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            // Back in the pool until it closes, so the counts stay whole.
            counts.add_handshake(self.id, self.peer, self.evicted.clone());
            return Err(refusal);
        }
        counts.serving += 1;
        let share_bytes = slots.share_bytes;
        let holder = counts
            .by_principal
            .entry(principal.id)
            .or_insert_with(|| Holder {
                connections: 0,
                share: Arc::new(Semaphore::new(share_bytes)),
            });
        holder.connections += 1;
        self.serving = Some((principal.id, holder.share.clone()));
        Ok(())
    }

    /// The principal's share of the engine's in-flight bytes, once
    /// serving: every connection of the principal draws on the same one.
    pub fn share(&self) -> Option<&Arc<Semaphore>> {
        self.serving.as_ref().map(|(_, share)| share)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        match &self.serving {
            Some((principal, share)) => {
                counts.serving -= 1;
                let last = counts
                    .by_principal
                    .get_mut(principal)
                    .is_some_and(|holder| {
                        holder.connections -= 1;
                        // Requests still in flight hold permits of this share;
                        // it is forgotten only once they are all back, so a
                        // new connection cannot start a fresh one meanwhile.
                        holder.connections == 0
                            && share.available_permits() == self.slots.share_bytes
                    });
                if last {
                    counts.by_principal.remove(principal);
                }
            }
            None => {
                counts.remove_handshake(self.id);
            }
        }
        if let Some(from_peer) = counts.by_peer.get_mut(&self.peer) {
            *from_peer -= 1;
            if *from_peer == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
        metrics::gauge!(telemetry::CONNECTIONS_OPEN).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Key, Registry};
    use crate::storage::MemStore;
    use std::net::Ipv4Addr;

    fn limits() -> Limits {
        Limits {
            max_handshakes: 2,
            max_connections: 4,
            max_connections_per_peer: 100,
            max_connections_per_principal: 2,
            reserved_operator_connections: 1,
            ..Limits::default()
        }
    }

    fn registry() -> Registry {
        let registry = Registry::load(Arc::new(MemStore::new())).expect("load");
        for (id, role) in [
            (0, Role::Operator),
            (5, Role::Merchant),
            (6, Role::Merchant),
        ] {
            let key = Key::generate(id).stored_key();
            registry.add(id, role, vec![], key).expect("add");
        }
        registry
    }

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn a_full_handshake_pool_evicts_its_oldest() {
        let slots = Slots::new(&limits());
        let first = slots.admit(PEER).expect("admitted");
        let second = slots.admit(PEER).expect("admitted");
        let third = slots.admit(PEER).expect("admitted: the pool never refuses");
        // The first is told to go; the others are not.
        tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted())
            .await
            .expect("the oldest is evicted");
        let mut second = second;
        let registry = registry();
        second
            .promote(&registry.get(5).expect("merchant"))
            .expect("second is still in the pool");
        drop(third);
        let mut late = first;
        assert_eq!(
            late.promote(&registry.get(6).expect("merchant"))
                .map_err(|r| r.limit),
            Err("max_handshakes"),
            "an evicted connection cannot authenticate"
        );
    }

    #[tokio::test]
    async fn the_address_holding_most_handshakes_is_evicted_first() {
        let limits = Limits {
            max_handshakes: 4,
            ..limits()
        };
        let slots = Slots::new(&limits);
        let honest_peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let attacker = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let honest = slots.admit(honest_peer).expect("admitted");
        let flood: Vec<Slot> = (0..3)
            .map(|_| slots.admit(attacker).expect("admitted"))
            .collect();
        // The pool is full; each newcomer from the attacker's address
        // evicts the attacker's oldest, never the older honest one.
        let mut evicted = Vec::new();
        for _ in 0..10 {
            let newcomer = slots.admit(attacker).expect("admitted");
            evicted.push(newcomer);
        }
        for slot in flood.iter().chain(&evicted[..7]) {
            tokio::time::timeout(std::time::Duration::from_secs(1), slot.evicted())
                .await
                .expect("an attacker's connection is evicted");
        }
        let mut honest = honest;
        honest
            .promote(&registry().get(5).expect("merchant"))
            .expect("the honest handshake was never evicted");
    }

    #[test]
    fn principals_are_capped_and_operators_keep_their_reserve() {
        let slots = Slots::new(&limits());
        let registry = registry();
        let (operator, five, six) = (
            registry.get(0).expect("operator"),
            registry.get(5).expect("merchant"),
            registry.get(6).expect("merchant"),
        );
        let serve = |principal: &Principal| {
            let mut slot = slots.admit(PEER).expect("admitted");
            slot.promote(principal).map(|()| slot).map_err(|r| r.limit)
        };
        let a = serve(&five).expect("first of 5");
        let _b = serve(&five).expect("second of 5");
        assert_eq!(serve(&five).err(), Some("max_connections_per_principal"));
        let _c = serve(&six).expect("first of 6");
        // Three of four serving: the last is the operator's.
        assert_eq!(serve(&six).err(), Some("max_connections"));
        let _d = serve(&operator).expect("the reserve");
        assert_eq!(serve(&operator).err(), Some("max_connections"));
        assert_eq!(slots.serving(5), 2);
        drop(a);
        assert_eq!(slots.serving(5), 1);
        // The freed place goes to whoever asks (here, the operator again).
        let _e = serve(&operator).expect("room again");
    }

    #[test]
    fn a_principals_share_outlives_its_connections_while_bytes_are_out() {
        let slots = Slots::new(&limits());
        let registry = registry();
        let mut slot = slots.admit(PEER).expect("admitted");
        slot.promote(&registry.get(5).expect("merchant"))
            .expect("serving");
        let share = slot.share().expect("a share").clone();
        let out = share.clone().try_acquire_many_owned(10).expect("bytes");
        drop(slot);
        let mut again = slots.admit(PEER).expect("admitted");
        again
            .promote(&registry.get(5).expect("merchant"))
            .expect("serving");
        assert!(
            Arc::ptr_eq(&share, again.share().expect("a share")),
            "the same share while its bytes are out"
        );
        drop(out);
    }
}
