//! Peers redialled whenever not connected: the persistent peers (always) and the bootstrap
//! peers named by id (while below `max_peers`).
//!
//! Each peer has its own backoff: the first attempt is immediate, each further one waits
//! twice as long as the previous, from [`INITIAL_BACKOFF`] up to [`MAX_BACKOFF`], with ±25%
//! jitter so that nodes restarted together do not dial in lockstep. The cap is short on
//! purpose: a peer that stays away costs one dial a second, and in exchange a node finds
//! the other side of a healed partition within about a second, however long it lasted. A
//! connection confirmed by identify resets the backoff.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// Wait before the second attempt (and after a connection drops).
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

struct Redial {
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    /// The wait after the next attempt.
    backoff: Duration,
    next_dial: Instant,
}

/// Peers to keep connected and when each is dialled next.
pub(crate) struct Redials {
    peers: Vec<Redial>,
}

impl Redials {
    /// `peers` (one entry per peer, with all its addresses) are all due at `now`.
    pub(crate) fn new(peers: Vec<(PeerId, Vec<Multiaddr>)>, now: Instant) -> Self {
        Self {
            peers: peers
                .into_iter()
                .map(|(peer, addrs)| Redial {
                    peer,
                    addrs,
                    backoff: INITIAL_BACKOFF,
                    next_dial: now,
                })
                .collect(),
        }
    }

    /// The peers to dial now: those `connected` says are not connected, that `skip` does not
    /// exclude (banned peers), whose time has come. Each is scheduled for its next attempt.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        connected: impl Fn(&PeerId) -> bool,
        skip: impl Fn(&PeerId) -> bool,
    ) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut due = Vec::new();
        for p in &mut self.peers {
            if p.next_dial > now || connected(&p.peer) || skip(&p.peer) {
                continue;
            }
            p.next_dial = now + jittered(p.backoff);
            p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
            due.push((p.peer, p.addrs.clone()));
        }
        due
    }

    /// `peer` is connected (and on our chain): its backoff starts over.
    pub(crate) fn connected(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.peer == *peer) {
            p.backoff = INITIAL_BACKOFF;
        }
    }

    /// `peer` has no connection left: it is redialled after its (reset) backoff.
    pub(crate) fn disconnected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(p) = self.peers.iter_mut().find(|p| p.peer == *peer) {
            p.next_dial = now + jittered(p.backoff);
            p.backoff = (p.backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// `d` scaled by a random factor in [0.75, 1.25).
fn jittered(d: Duration) -> Duration {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(d.as_nanos() as u64);
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.75 + unit / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets_on_connect() {
        let peer = PeerId::random();
        let start = Instant::now();
        let mut peers = Redials::new(vec![(peer, Vec::new())], start);
        let not_connected = |_: &PeerId| false;
        let no_skip = |_: &PeerId| false;
        // Due at once, then not again until the backoff has passed.
        assert_eq!(peers.due(start, not_connected, no_skip).len(), 1);
        assert!(peers.due(start, not_connected, no_skip).is_empty());
        let mut now = start;
        let mut expected = INITIAL_BACKOFF;
        for _ in 0..10 {
            let wait = peers.peers[0].next_dial - now;
            assert!(
                wait >= expected.mul_f64(0.75) && wait < expected.mul_f64(1.25),
                "{wait:?} for {expected:?}"
            );
            now = peers.peers[0].next_dial;
            assert_eq!(peers.due(now, not_connected, no_skip).len(), 1);
            expected = (expected * 2).min(MAX_BACKOFF);
        }
        assert_eq!(peers.peers[0].backoff, MAX_BACKOFF);
        // Connected peers and skipped (banned) ones are not dialled.
        now += MAX_BACKOFF * 2;
        assert!(peers.due(now, |_| true, no_skip).is_empty());
        assert!(peers.due(now, not_connected, |_| true).is_empty());
        // A connection resets the backoff; after it drops the peer is due again within the
        // initial backoff.
        peers.connected(&peer);
        peers.disconnected(&peer, now);
        assert!(peers.peers[0].next_dial - now < INITIAL_BACKOFF.mul_f64(1.25));
        assert_eq!(peers.peers[0].backoff, INITIAL_BACKOFF * 2);
    }
}
