//! Peer-to-peer networking for the TIME Coin validator node.
//!
//! This crate moves bytes; it knows nothing of blocks or votes. One libp2p swarm (TCP with noise
//! and yamux, DNS multiaddrs) runs in its own tokio task and combines:
//!
//! * gossipsub on the topics `/timecoin/<chain_id>/{proposal,prepare,precommit,tx}/1`, with
//!   manual validation (nothing is forwarded before the node reports [`Acceptance::Accept`]),
//!   content-hash message ids, strict signatures and peer scoring;
//! * Kademlia (`/timecoin/<chain_id>/kad/1.0.0`, server mode) and identify for discovery; peers
//!   announcing another chain are disconnected;
//! * request-response on `/timecoin/<chain_id>/sync/1` for catch-up, with hard size limits;
//! * ping and connection limits;
//! * reachability ([`Discovery`]): announced external addresses (the private listen addresses
//!   are then kept to ourselves), persistent peers redialled with backoff, and a table of the
//!   peers reached, saved across restarts.
//!
//! The node talks to the swarm task through a cloneable [`NetHandle`] and receives
//! [`NetEvent`]s from the receiver returned by [`start`].

#![deny(missing_docs)]

mod behaviour;
mod codec;
mod gate;
mod latency;
mod peer_table;
mod pending;
mod redial;
mod task;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub use latency::Latency;
use libp2p::request_response::ResponseChannel;
pub use libp2p::{identity::Keypair, Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// The gossip topics of a TIME Coin network, one per message kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Block proposals.
    Proposal,
    /// Prepare votes.
    Prepare,
    /// Precommit votes.
    Precommit,
    /// Transactions.
    Tx,
}

impl Topic {
    /// Every topic; the swarm subscribes to all of them.
    pub const ALL: [Topic; 4] = [Topic::Proposal, Topic::Prepare, Topic::Precommit, Topic::Tx];

    /// The message kind as it appears in the topic name.
    pub fn kind(self) -> &'static str {
        match self {
            Topic::Proposal => "proposal",
            Topic::Prepare => "prepare",
            Topic::Precommit => "precommit",
            Topic::Tx => "tx",
        }
    }

    /// The gossipsub topic name on the given chain: `/timecoin/<chain_id>/<kind>/1`.
    pub fn name(self, chain_id: &str) -> String {
        format!("/timecoin/{chain_id}/{}/1", self.kind())
    }
}

/// Largest payload accepted or published on each topic. These are protocol limits: a message
/// above its topic's limit is invalid on every node, so its forwarder is penalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// A block proposal with its body.
    pub proposal: usize,
    /// A prepare or precommit vote with its envelope.
    pub vote: usize,
    /// A batch of transactions.
    pub tx: usize,
}

impl MessageLimits {
    /// The limit of `topic`.
    pub fn of(self, topic: Topic) -> usize {
        match topic {
            Topic::Proposal => self.proposal,
            Topic::Prepare | Topic::Precommit => self.vote,
            Topic::Tx => self.tx,
        }
    }

    /// The largest limit of any topic.
    pub fn largest(self) -> usize {
        self.proposal.max(self.vote).max(self.tx)
    }
}

/// Everything the swarm needs to start.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The chain this node belongs to; part of every protocol and topic name.
    pub chain_id: String,
    /// The node's libp2p identity (ed25519); it signs every gossip message.
    pub keypair: Keypair,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/26656` (port 0 picks a free port).
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start; each should end in `/p2p/<PeerId>` (`/dns4/...` works).
    pub bootstrap: Vec<Multiaddr>,
    /// Upper bound on established connections; discovery stops dialling at this number.
    /// Reserved peers (the bootstrap peers named by id, and `reserved`) count toward it but
    /// are never refused.
    pub max_peers: u32,
    /// Peers the connection limits never refuse besides the bootstrap peers named by id: the
    /// operator's other validators, its sentries, peers it must always reach.
    pub reserved: Vec<PeerId>,
    /// Upper bound on inbound connections of peers that are not reserved. Kept below
    /// `max_peers` so that strangers dialling in cannot take the slots the node needs to dial
    /// out.
    pub max_inbound: u32,
    /// Upper bound on inbound connections from one IP address (reserved peers excepted): one
    /// host cannot fill the inbound slots with fresh peer ids.
    pub max_inbound_per_ip: u32,
    /// Largest payload per topic.
    pub max_message_bytes: MessageLimits,
    /// Largest sync response this node sends or accepts.
    pub max_sync_response_bytes: usize,
    /// External addresses, persistent peers and the saved peer table.
    pub discovery: Discovery,
    /// Benchmarks only: delay every byte this node receives by this much (see [`Latency`]),
    /// to measure the protocol over a network slower than loopback. `None` (the default for
    /// every real node) leaves the transport untouched; the wire format is the same either way.
    pub latency: Option<Latency>,
}

/// How the node is found and keeps its peers beyond the bootstrap list; the default (all
/// empty) is a node that announces its listen addresses and forgets its peers on exit.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Addresses at which other nodes reach this one (a public IP, a port forwarded by a NAT
    /// or a load balancer), e.g. `/ip4/203.0.113.7/tcp/26656`. When any is given, identify
    /// (and through it other nodes' Kademlia tables) announces these and only these: the
    /// listen addresses, often private, are not advertised. A trailing `/p2p/<own id>` is
    /// allowed.
    pub external_addresses: Vec<Multiaddr>,
    /// Peers to stay connected to, each ending in `/p2p/<PeerId>`: dialled at start and
    /// redialled with exponential backoff (1 s doubling to 60 s, with jitter) whenever not
    /// connected, forever. They are reserved: the connection limits never refuse them.
    pub persistent_peers: Vec<Multiaddr>,
    /// Where the table of peers this node reached is kept (e.g. `<data dir>/peers.json`):
    /// read at start to seed Kademlia and dial a few of them, written periodically and at
    /// shutdown. A missing or corrupt file is ignored with a warning. `None`: no table.
    pub peer_table: Option<PathBuf>,
}

/// The node's verdict on a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: forward it to the mesh.
    Accept,
    /// Provably invalid (malformed, bad signature, wrong chain): drop it and lower the score of
    /// the peer that sent it. Three rejections in quick succession graylist the peer, so use this
    /// only for what no honest node could have accepted.
    Reject,
    /// Not useful to this node (stale, duplicate, unknown height or block) but possibly valid
    /// elsewhere: drop it without penalty.
    Ignore,
}

/// Identifies a received gossip message when reporting its validation result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageId(libp2p::gossipsub::MessageId);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where the answer to an inbound sync request goes; hand it back to [`NetHandle::respond`].
#[derive(Debug)]
pub struct ResponseToken(ResponseChannel<Vec<u8>>);

/// What the network tells the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message awaiting validation; answer with [`NetHandle::report`].
    Gossip {
        /// The topic it arrived on.
        topic: Topic,
        /// The payload as published.
        data: Vec<u8>,
        /// Its id (BLAKE3 of `data`).
        id: MessageId,
        /// The peer that forwarded it to us (not necessarily its author).
        source: PeerId,
    },
    /// A peer asks for sync data; answer with [`NetHandle::respond`].
    SyncRequest {
        /// The requesting peer.
        peer: PeerId,
        /// The request bytes.
        request: Vec<u8>,
        /// Where the response goes.
        channel: ResponseToken,
    },
    /// A peer of this chain is connected (its identify record matched our chain).
    PeerConnected(PeerId),
    /// A peer previously reported as connected has no connection left.
    PeerDisconnected(PeerId),
    /// A peer subscribed to `topic`: what is published on it from now on reaches the peer
    /// (what was published before did not).
    PeerSubscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: Topic,
    },
}

impl NetEvent {
    /// Bytes the event holds that a peer chose; what the event channel's byte bound counts.
    fn payload_len(&self) -> usize {
        match self {
            NetEvent::Gossip { data, .. } => data.len(),
            NetEvent::SyncRequest { request, .. } => request.len(),
            NetEvent::PeerConnected(_)
            | NetEvent::PeerDisconnected(_)
            | NetEvent::PeerSubscribed { .. } => 0,
        }
    }
}

/// The node's end of the event channel, bounded in events and in payload bytes: a node that
/// falls behind loses gossip (reported `Ignore`, so peers are not penalised) instead of
/// buffering without limit.
#[derive(Debug)]
pub struct NetEvents {
    events: mpsc::Receiver<NetEvent>,
    bytes: Arc<AtomicUsize>,
}

impl NetEvents {
    /// The next event, or `None` once the network task has stopped. Cancel-safe.
    pub async fn recv(&mut self) -> Option<NetEvent> {
        let event = self.events.recv().await?;
        self.bytes.fetch_sub(event.payload_len(), Ordering::Relaxed);
        Some(event)
    }
}

/// A connected peer as shown to operators.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// The peer id (base58).
    pub peer_id: String,
    /// Remote addresses of the open connections.
    pub addresses: Vec<String>,
    /// The agent version from identify, once received.
    pub agent: Option<String>,
    /// The protocol version from identify, once received.
    pub protocol_version: Option<String>,
    /// The peer's gossipsub score as seen by this node (negative after rejected messages).
    pub gossip_score: Option<f64>,
}

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration cannot work (bad chain id, bad limits, ...).
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The transport could not be built or could not listen.
    #[error("transport error: {0}")]
    Transport(String),
    /// A sync request failed: dial failure, timeout, closed connection, oversize response.
    #[error("sync request to {peer} failed: {reason}")]
    Request {
        /// The peer that was asked.
        peer: PeerId,
        /// Why it failed.
        reason: String,
    },
    /// The swarm task has stopped.
    #[error("the network task has shut down")]
    Shutdown,
}

/// Requests that expect an answer or need back-pressure; they travel on a bounded channel.
enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Answers to events the swarm emitted. They go on an unbounded channel so that the synchronous
/// `report`/`respond`/`penalize` never drop or block; their number is bounded by the events the
/// swarm hands out.
enum Control {
    Report {
        id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    },
    Respond {
        channel: ResponseToken,
        data: Vec<u8>,
    },
    Penalize {
        peer: PeerId,
        reason: String,
    },
}

/// A cloneable handle on the swarm task.
#[derive(Clone, Debug)]
pub struct NetHandle {
    local_peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    controls: mpsc::UnboundedSender<Control>,
}

impl NetHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Publishes `data` on `topic`. Never fails for lack of peers: the message waits in a bounded
    /// queue (oldest dropped first) until a peer subscribed to the topic appears. Publishing the
    /// same content twice is a no-op.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) {
        if self
            .commands
            .send(Command::Publish { topic, data })
            .await
            .is_err()
        {
            tracing::debug!(?topic, "publish after network shutdown dropped");
        }
    }

    /// Reports the node's validation result for a gossip message received as
    /// [`NetEvent::Gossip`]; `source` is the event's `source`.
    pub fn report(&self, id: MessageId, source: PeerId, acceptance: Acceptance) {
        self.control(Control::Report {
            id,
            source,
            acceptance,
        });
    }

    /// Sends a sync request to `peer` (dialling it if needed) and waits for the response.
    pub async fn request(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.ask(|reply| Command::Request {
            peer,
            data: request,
            reply,
        })
        .await
        .unwrap_or(Err(NetError::Shutdown))
    }

    /// Answers a [`NetEvent::SyncRequest`].
    pub fn respond(&self, channel: ResponseToken, response: Vec<u8>) {
        self.control(Control::Respond {
            channel,
            data: response,
        });
    }

    /// Disconnects `peer` and refuses its connections for a while (e.g. after a bad sync
    /// response).
    pub fn penalize(&self, peer: PeerId, reason: &str) {
        self.control(Control::Penalize {
            peer,
            reason: reason.to_owned(),
        });
    }

    /// The currently connected peers.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        self.ask(|reply| Command::Peers { reply })
            .await
            .unwrap_or_default()
    }

    /// The addresses the swarm listens on (with the actual ports when port 0 was configured).
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ask(|reply| Command::ListenAddrs { reply })
            .await
            .unwrap_or_default()
    }

    /// Stops the swarm task, closing every connection; returns once it has stopped.
    pub async fn shutdown(&self) {
        // No answer means the task already ended, which is what we want.
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }

    /// Sends the command `command` makes around a reply channel and waits for the task's
    /// answer; `None` if the task has stopped.
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    fn control(&self, control: Control) {
        if self.controls.send(control).is_err() {
            tracing::debug!("network control after shutdown dropped");
        }
    }
}

/// Builds the swarm, starts listening, dials the bootstrap peers and spawns the swarm task
/// (with `tokio::spawn`). libp2p's metrics and this crate's gauges are registered in `registry`.
///
/// When this returns, [`NetHandle::listen_addrs`] already reports the bound addresses.
pub async fn start(
    config: NetConfig,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<(NetHandle, NetEvents), NetError> {
    task::start(config, registry).await
}
