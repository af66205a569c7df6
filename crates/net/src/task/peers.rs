//! How the swarm task finds and keeps its peers: walking the DHT while below `max_peers`,
//! dialling saved peers, writing the saved peer table, and parsing the external addresses and
//! persistent peers of [`crate::Discovery`].

use super::{Task, SAVED_PEERS_DIALLED};
use crate::peer_table;
use crate::NetError;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

impl Task {
    /// Keeps the node connected while below `max_peers`: walks the DHT, and while isolated
    /// dials the saved peers and the bootstrap addresses without a peer id (those with one
    /// are redialled by `maintain`).
    pub(super) fn discover(&mut self) {
        if self.peers.len() >= self.max_peers {
            return;
        }
        if self.peers.is_empty() {
            self.dial_saved_peers();
            // Without a peer id we cannot tell whether we are already connected to it.
            for addr in self.anonymous_bootstrap.clone() {
                self.dial(addr.into());
            }
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        if kad.kbuckets().next().is_some() {
            kad.get_closest_peers(PeerId::random());
        }
    }

    /// Dials the most recently seen saved peers that are not connected (at start, and while
    /// the node has no peer at all).
    pub(super) fn dial_saved_peers(&mut self) {
        let Some(table) = &self.peer_table else {
            return;
        };
        let due: Vec<_> = table
            .peers()
            .iter()
            .take(SAVED_PEERS_DIALLED)
            .filter(|p| !self.swarm.is_connected(&p.peer) && !self.banned.contains_key(&p.peer))
            .map(|p| (p.peer, p.addrs.clone()))
            .collect();
        for (peer, addrs) in due {
            tracing::debug!(%peer, "dialling saved peer");
            self.dial(
                DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
        }
    }

    /// Starts writing the peer table if it changed, unless the previous write is still going
    /// (the next tick catches up).
    pub(super) fn save_peer_table(&mut self) {
        if self
            .peer_table_save
            .as_ref()
            .is_some_and(|h| !h.is_finished())
        {
            return;
        }
        let Some(table) = &mut self.peer_table else {
            return;
        };
        let Some(bytes) = table.snapshot() else {
            return;
        };
        let path = table.path().to_path_buf();
        self.peer_table_save = Some(tokio::task::spawn_blocking(move || {
            write_peer_table(&path, &bytes)
        }));
    }

    /// The last write of the peer table, with every connected peer seen now; waits for it.
    pub(super) async fn save_peer_table_at_shutdown(&mut self) {
        if let Some(running) = self.peer_table_save.take() {
            let _ = running.await;
        }
        let Some(table) = &mut self.peer_table else {
            return;
        };
        for (peer, state) in &self.peers {
            if state.announced {
                table.record(*peer, []);
            }
        }
        let Some(bytes) = table.snapshot() else {
            return;
        };
        let path = table.path().to_path_buf();
        let _ = tokio::task::spawn_blocking(move || write_peer_table(&path, &bytes)).await;
    }
}

/// Writes the peer table, logging (not returning) failures: a node runs without it.
fn write_peer_table(path: &std::path::Path, bytes: &[u8]) {
    match peer_table::write_atomically(path, bytes) {
        Ok(()) => tracing::debug!(path = %path.display(), "peer table saved"),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "peer table not saved")
        }
    }
}

/// The external addresses to announce: a trailing `/p2p/<own id>` is dropped, another peer's
/// id is an error.
pub(super) fn external_addresses(
    addrs: &[Multiaddr],
    local: PeerId,
) -> Result<Vec<Multiaddr>, NetError> {
    let mut external = Vec::new();
    for addr in addrs {
        let mut addr = addr.clone();
        if let Some(Protocol::P2p(peer)) = addr.iter().last() {
            if peer != local {
                return Err(NetError::Config(format!(
                    "external address {addr} names another peer"
                )));
            }
            addr.pop();
        }
        if addr.is_empty() {
            return Err(NetError::Config("empty external address".into()));
        }
        if !external.contains(&addr) {
            external.push(addr);
        }
    }
    Ok(external)
}

/// The persistent peers by id, each with its transport addresses; every entry must end in
/// `/p2p/<peer id>`. This node's own id is skipped (a shared testnet config may list it).
pub(super) fn persistent_peers(
    addrs: &[Multiaddr],
    local: PeerId,
) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, NetError> {
    let mut peers: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    for addr in addrs {
        let mut transport = addr.clone();
        let Some(Protocol::P2p(peer)) = transport.pop() else {
            return Err(NetError::Config(format!(
                "persistent peer {addr} must end in /p2p/<peer id>"
            )));
        };
        if peer == local {
            continue;
        }
        match peers.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, addrs)) => addrs.push(transport),
            None => peers.push((peer, vec![transport])),
        }
    }
    Ok(peers)
}
