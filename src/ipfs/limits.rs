//! What one peer, and all peers together, may make the node hold.
//!
//! A peer is unauthenticated and free to send anything, so everything it controls has a
//! bound here, checked before the memory is taken:
//!
//! - **Connections**: at most [`CONNECTIONS_PER_PEER`] per peer, [`CONNECTIONS_INCOMING`]
//!   incoming and [`CONNECTIONS_TOTAL`] in all (libp2p's connection-limits behaviour), and
//!   [`STREAMS_PER_CONNECTION`] yamux streams on each (past which yamux drops the whole
//!   connection, so it is no tighter than yamux's default).
//! - **Inbound streams** being read: [`STREAMS_PER_PEER`] per peer and [`STREAMS_TOTAL`] in
//!   all ([`InboundGate`]); a stream past either is reset at once, unread, so yamux holds
//!   no buffer for it either.
//! - **Inbound bytes**: a message is at most `bitswap::MAX_MESSAGE`, its body is allocated
//!   only once the length it claims is granted from the budgets, and the bodies being read and
//!   decoded hold [`INBOUND_BYTES`] at most between them, and [`INBOUND_BYTES_PER_PEER`]
//!   for one peer (semaphores in the node; a decoded want-list is about twice its
//!   encoding).
//! - **Outbound queues**: what we queue for a peer (its blocks, haves, don't-haves) is at
//!   most [`QUEUED_BYTES_PER_PEER`] and [`QUEUED_MESSAGES_PER_PEER`], and
//!   [`QUEUED_BYTES_TOTAL`] for all peers ([`Queues`]). A reply that would pass them is not
//!   queued (a block want waits; a have/don't-have answer is dropped: throttling); a peer
//!   throttled [`THROTTLES_BEFORE_DROP`] times in a row is disconnected and not served
//!   again.
//! - **Wants**: only the first [`WANTS_PER_MESSAGE`] entries of a message are looked at, and
//!   a peer's block wants wait in a queue of at most [`PENDING_WANTS_PER_PEER`] until its
//!   outbound queue has room (past that they are dropped; the peer asks again).
//!
//! Our own requests to peers are never throttled: they are few and ours.

use std::collections::HashMap;

use libp2p::PeerId;

pub const CONNECTIONS_PER_PEER: u32 = 2;
pub const CONNECTIONS_INCOMING: u32 = 128;
pub const CONNECTIONS_TOTAL: u32 = 256;
/// yamux's own default: a peer past it loses its whole connection, and honest peers (Kubo,
/// Helia) open a stream per message, so the real bound is [`STREAMS_PER_PEER`].
pub const STREAMS_PER_CONNECTION: usize = 512;
pub const STREAMS_PER_PEER: usize = 64;
pub const STREAMS_TOTAL: usize = 1024;
pub const INBOUND_BYTES: usize = 24 << 20;
/// Of [`INBOUND_BYTES`], what one peer may hold, so that one peer cannot starve the rest.
pub const INBOUND_BYTES_PER_PEER: usize = 8 << 20 | 128 << 10;
pub const QUEUED_BYTES_PER_PEER: usize = 8 << 20;
pub const QUEUED_MESSAGES_PER_PEER: usize = 1024;
pub const QUEUED_BYTES_TOTAL: usize = 48 << 20;
pub const WANTS_PER_MESSAGE: usize = 1024;
pub const PENDING_WANTS_PER_PEER: usize = 4096;
pub const THROTTLES_BEFORE_DROP: u32 = 4096;

/// Inbound streams being read, per peer and in all.
#[derive(Default)]
pub struct InboundGate {
    per_peer: HashMap<PeerId, usize>,
    total: usize,
}

impl InboundGate {
    /// Whether a new stream from `peer` may be read (counted in if so).
    pub fn admit(&mut self, peer: PeerId) -> bool {
        let n = self.per_peer.entry(peer).or_default();
        if *n >= STREAMS_PER_PEER || self.total >= STREAMS_TOTAL {
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
            return false;
        }
        *n += 1;
        self.total += 1;
        true
    }

    /// Whether any stream of `peer` is being read.
    pub fn reading(&self, peer: &PeerId) -> bool {
        self.per_peer.contains_key(peer)
    }

    /// A stream `admit` let in is done.
    pub fn leave(&mut self, peer: &PeerId) {
        if let Some(n) = self.per_peer.get_mut(peer) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per_peer.remove(peer);
            }
        }
    }
}

/// What is queued for each peer's writer, in bytes and messages.
#[derive(Default)]
pub struct Queues {
    per_peer: HashMap<PeerId, Load>,
    total: usize,
}

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub bytes: usize,
    pub messages: usize,
    /// Replies not queued in a row (0 after one is).
    pub throttled: u32,
}

/// What queuing a reply for a peer came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Queued,
    /// Over a bound: not queued; the peer asks again later.
    Throttled,
    /// Throttled too long: disconnect the peer.
    Drop,
}

impl Queues {
    /// Takes `bytes` for one message to `peer`, if the bounds allow (`ours`: our own
    /// requests, always).
    pub fn reserve(&mut self, peer: PeerId, bytes: usize, ours: bool) -> Admit {
        let load = self.per_peer.entry(peer).or_default();
        let fits = load.bytes + bytes <= QUEUED_BYTES_PER_PEER
            && load.messages < QUEUED_MESSAGES_PER_PEER
            && self.total + bytes <= QUEUED_BYTES_TOTAL;
        if !fits && !ours {
            load.throttled += 1;
            return if load.throttled >= THROTTLES_BEFORE_DROP { Admit::Drop } else { Admit::Throttled };
        }
        load.bytes += bytes;
        load.messages += 1;
        load.throttled = 0;
        self.total += bytes;
        Admit::Queued
    }

    /// Whether `bytes` more would fit `peer`'s queue now (a cheap check before reading a
    /// block from the store only to find it cannot be sent).
    pub fn has_room(&self, peer: &PeerId, bytes: usize) -> bool {
        let load = self.per_peer.get(peer).copied().unwrap_or_default();
        load.bytes + bytes <= QUEUED_BYTES_PER_PEER && self.total + bytes <= QUEUED_BYTES_TOTAL
    }

    /// One message of `bytes` left `peer`'s queue (sent, or dropped with the writer).
    pub fn release(&mut self, peer: &PeerId, bytes: usize) {
        if let Some(load) = self.per_peer.get_mut(peer) {
            load.bytes = load.bytes.saturating_sub(bytes);
            load.messages = load.messages.saturating_sub(1);
            self.total = self.total.saturating_sub(bytes);
            if load.bytes == 0 && load.messages == 0 && load.throttled == 0 {
                self.per_peer.remove(peer);
            }
        }
    }

    /// What is queued for `peer` now.
    pub fn load(&self, peer: &PeerId) -> Load {
        self.per_peer.get(peer).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_so_many_streams_and_all_peers_so_many_more() {
        let mut gate = InboundGate::default();
        let a = PeerId::random();
        for _ in 0..STREAMS_PER_PEER {
            assert!(gate.admit(a));
        }
        assert!(!gate.admit(a), "past the per-peer bound");
        gate.leave(&a);
        assert!(gate.admit(a), "room again once one is done");
        let others: Vec<PeerId> = (0..STREAMS_TOTAL).map(|_| PeerId::random()).collect();
        let admitted = others.iter().filter(|p| gate.admit(**p)).count();
        assert_eq!(admitted, STREAMS_TOTAL - STREAMS_PER_PEER, "the total bound holds");
    }

    #[test]
    fn queues_throttle_a_peer_then_drop_it_and_never_throttle_our_own_requests() {
        let mut q = Queues::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(q.reserve(a, QUEUED_BYTES_PER_PEER, false), Admit::Queued);
        assert!(!q.has_room(&a, 1));
        assert_eq!(q.reserve(a, 1, false), Admit::Throttled);
        assert_eq!(q.reserve(a, 1, true), Admit::Queued, "our own wants always go");
        assert!(q.has_room(&b, 1), "another peer is not held back by a's queue");
        q.release(&a, QUEUED_BYTES_PER_PEER);
        assert_eq!(q.reserve(a, 1000, false), Admit::Queued);
        // a peer that never reads its replies: throttled, then dropped
        let mut last = Admit::Queued;
        for _ in 0..QUEUED_MESSAGES_PER_PEER + THROTTLES_BEFORE_DROP as usize {
            last = q.reserve(b, 10, false);
            if last == Admit::Drop {
                break;
            }
        }
        assert_eq!(last, Admit::Drop);
        assert!(q.load(&b).messages <= QUEUED_MESSAGES_PER_PEER);
    }

    #[test]
    fn all_peers_together_stay_under_the_total() {
        let mut q = Queues::default();
        let mut queued = 0;
        for _ in 0..(QUEUED_BYTES_TOTAL / QUEUED_BYTES_PER_PEER) + 4 {
            if q.reserve(PeerId::random(), QUEUED_BYTES_PER_PEER, false) == Admit::Queued {
                queued += QUEUED_BYTES_PER_PEER;
            }
        }
        assert_eq!(queued, QUEUED_BYTES_TOTAL);
    }
}
