//! The peers this node has reached, kept across restarts.
//!
//! A peer enters the table once identify confirmed it belongs to our chain on an established
//! connection; its addresses are the ones we dialled it at (proven) followed by the ones it
//! announced. The table is bounded ([`MAX_SAVED_PEERS`] peers, most recently seen first, each
//! with at most [`MAX_ADDRS_PER_PEER`] addresses) and written as JSON, atomically (a temporary
//! file renamed over the old one), periodically and at shutdown. At start it seeds Kademlia and
//! a few of its peers are dialled, so that a node no longer depends on its bootstrap list once
//! it has run. A missing or unreadable file is an empty table (with a warning), never an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// Most peers kept.
pub(crate) const MAX_SAVED_PEERS: usize = 256;
/// Most addresses kept per peer.
pub(crate) const MAX_ADDRS_PER_PEER: usize = 8;
/// A larger file is not ours (256 peers of 8 addresses take well under 200 KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;
/// The file format's version.
const FORMAT_VERSION: u32 = 1;

/// A peer and the addresses it was reached at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SavedPeer {
    pub(crate) peer: PeerId,
    pub(crate) addrs: Vec<Multiaddr>,
}

/// The table, most recently seen peer first.
pub(crate) struct PeerTable {
    path: PathBuf,
    local: PeerId,
    peers: Vec<SavedPeer>,
    /// Changed since the last [`snapshot`](Self::snapshot).
    dirty: bool,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    peers: Vec<FileEntry>,
}

#[derive(Serialize, Deserialize)]
struct FileEntry {
    peer_id: String,
    addrs: Vec<String>,
}

impl PeerTable {
    /// Reads the table at `path`; a missing, oversized or corrupt file gives an empty table
    /// (corrupt entries are skipped), with a warning.
    pub(crate) fn load(path: PathBuf, local: PeerId) -> PeerTable {
        let mut table = PeerTable {
            path,
            local,
            peers: Vec::new(),
            dirty: false,
        };
        match read(&table.path) {
            Ok(Some(file)) => {
                let mut skipped = 0;
                for entry in file.peers {
                    let Ok(peer) = entry.peer_id.parse::<PeerId>() else {
                        skipped += 1;
                        continue;
                    };
                    let addrs: Vec<Multiaddr> =
                        entry.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                    if table.peers.len() < MAX_SAVED_PEERS {
                        // Appended in file order (most recent first), so `insert` keeps it.
                        table.insert(peer, addrs, false);
                    }
                }
                table.dirty = false;
                if skipped > 0 {
                    tracing::warn!(path = %table.path.display(), skipped, "skipped unreadable peer table entries");
                }
                tracing::info!(path = %table.path.display(), peers = table.peers.len(), "peer table loaded");
            }
            Ok(None) => {
                tracing::info!(path = %table.path.display(), "no peer table yet");
            }
            Err(reason) => {
                tracing::warn!(path = %table.path.display(), %reason, "peer table ignored");
            }
        }
        table
    }

    /// The saved peers, most recently seen first.
    pub(crate) fn peers(&self) -> &[SavedPeer] {
        &self.peers
    }

    /// Forgets `peer` (penalised or banned).
    pub(crate) fn remove(&mut self, peer: &PeerId) {
        let before = self.peers.len();
        self.peers.retain(|p| p.peer != *peer);
        self.dirty |= self.peers.len() != before;
    }

    /// Records that `peer` was seen now at `addrs` (best first): it moves to the front, with
    /// these addresses ahead of the ones it had. A peer without any usable address is not
    /// added (but an existing entry still moves to the front).
    pub(crate) fn record(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        let addrs: Vec<Multiaddr> = addrs.into_iter().collect();
        self.insert(peer, addrs, true);
    }

    fn insert(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, front: bool) {
        if peer == self.local {
            return;
        }
        let mut merged: Vec<Multiaddr> = Vec::new();
        let old = self
            .peers
            .iter()
            .position(|p| p.peer == peer)
            .map(|i| self.peers.remove(i));
        for addr in addrs
            .into_iter()
            .chain(old.into_iter().flat_map(|o| o.addrs))
        {
            let Some(addr) = dialable(addr, &peer) else {
                continue;
            };
            if merged.len() < MAX_ADDRS_PER_PEER && !merged.contains(&addr) {
                merged.push(addr);
            }
        }
        if merged.is_empty() {
            return;
        }
        let entry = SavedPeer {
            peer,
            addrs: merged,
        };
        if front {
            self.peers.insert(0, entry);
        } else {
            self.peers.push(entry);
        }
        self.peers.truncate(MAX_SAVED_PEERS);
        self.dirty = true;
    }

    /// The file's new contents if the table changed since the last snapshot.
    pub(crate) fn snapshot(&mut self) -> Option<Vec<u8>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        let file = FileFormat {
            version: FORMAT_VERSION,
            peers: self
                .peers
                .iter()
                .map(|p| FileEntry {
                    peer_id: p.peer.to_base58(),
                    addrs: p.addrs.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
        };
        Some(serde_json::to_vec_pretty(&file).expect("the peer table serialises"))
    }

    /// Where the table is saved.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The file's contents, `None` if there is no file.
fn read(path: &Path) -> Result<Option<FileFormat>, String> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_FILE_BYTES} a peer table can take",
            metadata.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let file: FileFormat = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!("unknown format version {}", file.version));
    }
    Ok(Some(file))
}

/// `addr` as kept in the table: without a trailing `/p2p/<peer>`; `None` if it names another
/// peer or cannot be dialled (an unspecified IP such as `0.0.0.0`).
fn dialable(mut addr: Multiaddr, peer: &PeerId) -> Option<Multiaddr> {
    if let Some(Protocol::P2p(id)) = addr.iter().last() {
        if id != *peer {
            return None;
        }
        addr.pop();
    }
    let unspecified = addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        Protocol::P2p(_) | Protocol::P2pCircuit => true,
        _ => false,
    });
    (!unspecified && !addr.is_empty()).then_some(addr)
}

/// Writes `bytes` to `path` so that a reader sees the old or the new contents, never a mix:
/// into a temporary file beside it, flushed to disk, then renamed over it.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn most_recent_first_bounded_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let local = PeerId::random();
        let mut table = PeerTable::load(path.clone(), local);
        assert!(table.peers().is_empty());
        assert!(table.snapshot().is_none(), "nothing to save yet");

        let ids: Vec<PeerId> = (0..MAX_SAVED_PEERS + 5).map(|_| PeerId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            table.record(*id, [addr(1000 + i as u16)]);
        }
        // Our own id, an unspecified address and another peer's address are never kept.
        table.record(local, [addr(1)]);
        table.record(PeerId::random(), ["/ip4/0.0.0.0/tcp/1".parse().unwrap()]);
        let other = PeerId::random();
        table.record(ids[10], [addr(1).with(Protocol::P2p(other))]);
        assert_eq!(table.peers().len(), MAX_SAVED_PEERS);
        // The oldest five fell out; ids[10] was seen last and is first.
        assert_eq!(table.peers()[0].peer, ids[10]);
        let has = |id: &PeerId| table.peers().iter().any(|p| p.peer == *id);
        assert!(!has(&ids[4]) && has(&ids[5]));
        // New addresses go first, with `/p2p/<peer>` stripped; at most eight per peer.
        let last = *ids.last().unwrap();
        for port in 0..20 {
            table.record(last, [addr(port).with(Protocol::P2p(last))]);
        }
        assert_eq!(table.peers()[0].addrs.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(table.peers()[0].addrs[0], addr(19));

        write_atomically(&path, &table.snapshot().unwrap()).unwrap();
        assert!(table.snapshot().is_none(), "saved");
        let loaded = PeerTable::load(path.clone(), local);
        assert_eq!(loaded.peers(), table.peers());
    }

    #[test]
    fn missing_or_corrupt_files_are_empty_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.json");
        let local = PeerId::random();
        assert!(PeerTable::load(path.clone(), local).peers().is_empty());
        for garbage in [
            &b"{not json"[..],
            b"",
            b"{\"version\":99,\"peers\":[]}",
            b"[1,2,3]",
        ] {
            std::fs::write(&path, garbage).unwrap();
            assert!(PeerTable::load(path.clone(), local).peers().is_empty());
        }
        // Unreadable entries are skipped, the rest kept.
        let good = PeerId::random();
        std::fs::write(
            &path,
            format!(
                r#"{{"version":1,"peers":[
                    {{"peer_id":"nope","addrs":["/ip4/10.0.0.1/tcp/1"]}},
                    {{"peer_id":"{good}","addrs":["garbage","/ip4/10.0.0.2/tcp/2"]}}]}}"#
            ),
        )
        .unwrap();
        let table = PeerTable::load(path.clone(), local);
        assert_eq!(
            table.peers(),
            [SavedPeer {
                peer: good,
                addrs: vec!["/ip4/10.0.0.2/tcp/2".parse().unwrap()]
            }]
        );
        // Too large to be a peer table.
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(PeerTable::load(path, local).peers().is_empty());
    }
}
