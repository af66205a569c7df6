//! When to hand the engine [`timecoin_consensus::Input::PeerJoined`], which sends our votes of
//! the round again for peers that missed them. A peer joins when it subscribes to a vote
//! topic: after connecting, or when a partition heals.

use std::time::Duration;
use tokio::time::Instant;

/// Wait after a peer joins before sending: peers that come back together (the other half
/// of a healed partition) share one resend.
const GATHER: Duration = Duration::from_millis(20);
/// Least time between two resends, whatever peers do: subscribing is free for a peer, so it
/// must not be able to make us send our votes again at its own pace.
const SPACING: Duration = Duration::from_millis(250);

/// Coalesces joins into resends, at most one per [`SPACING`].
#[derive(Default)]
pub(super) struct ResendPacer {
    due: Option<Instant>,
    last: Option<Instant>,
}

impl ResendPacer {
    /// A peer joined at `now`: a resend is planned unless one already is.
    pub(super) fn peer_joined(&mut self, now: Instant) {
        if self.due.is_none() {
            let spaced = self.last.map_or(now, |last| last + SPACING);
            self.due = Some(spaced.max(now + GATHER));
        }
    }

    /// When the planned resend is due.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The planned resend went out at `now`.
    pub(super) fn sent(&mut self, now: Instant) {
        self.due = None;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_are_gathered_and_resends_spaced() {
        let mut pacer = ResendPacer::default();
        let start = Instant::now();
        assert_eq!(pacer.due(), None);
        pacer.peer_joined(start);
        pacer.peer_joined(start + Duration::from_millis(5));
        assert_eq!(pacer.due(), Some(start + GATHER));
        pacer.sent(start + GATHER);
        assert_eq!(pacer.due(), None);
        // A join right after a resend waits for the spacing, however many follow.
        for ms in 30..40 {
            pacer.peer_joined(start + Duration::from_millis(ms));
        }
        assert_eq!(pacer.due(), Some(start + GATHER + SPACING));
        // Long after, only the gathering wait applies.
        pacer.sent(start + GATHER + SPACING);
        let later = start + Duration::from_secs(10);
        pacer.peer_joined(later);
        assert_eq!(pacer.due(), Some(later + GATHER));
    }
}
