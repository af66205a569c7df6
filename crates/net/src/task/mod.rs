//! The swarm task: owns the libp2p swarm and serves the [`NetHandle`](crate::NetHandle).
//!
//! This file holds the task and what the node asks of it (commands, reports, publications,
//! maintenance, discovery); `swarm_events` handles what the swarm reports, `peers` the
//! external addresses, persistent peers and the saved peer table, `metrics` the crate's own
//! gauges and counters.

mod metrics;
mod peers;
mod swarm_events;

use metrics::NetMetrics;
use peers::{external_addresses, persistent_peers};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{
    core::{transport::ListenerId, ConnectedPoint},
    gossipsub, identify, kad,
    metrics::{Metrics, Recorder},
    multiaddr::Protocol,
    request_response,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, ListenError, SwarmEvent,
    },
    Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::{topic_hash, Behaviour, BehaviourEvent, Protocols, PUBLISH_THRESHOLD};
use crate::codec::MAX_SYNC_REQUEST_BYTES;
use crate::peer_table::PeerTable;
use crate::pending::PendingQueue;
use crate::redial::Redials;
use crate::{
    Acceptance, Command, Control, MessageId, NetConfig, NetError, NetEvent, NetEvents, NetHandle,
    PeerInfo, ResponseToken, Topic,
};

/// Capacity of the event channel to the node; beyond it events are dropped (and gossip is
/// reported `Ignore`) rather than stalling the swarm.
const EVENT_CHANNEL: usize = 4096;
/// Payload bytes the event channel may hold: a few full proposals plus votes and transactions.
const EVENT_CHANNEL_BYTES: usize = 32 * 1024 * 1024;
/// Capacity of the command channel; `publish` and `request` wait for room (back-pressure).
const COMMAND_CHANNEL: usize = 1024;
/// Retry of queued publications and expiry of bans.
const MAINTENANCE_INTERVAL: Duration = Duration::from_millis(300);
/// Random Kademlia walks (and dials of bootstrap addresses without a peer id) while below
/// `max_peers`.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);
/// Connections without any protocol activity are closed after this long; gossipsub keeps its
/// mesh connections alive on its own, this mostly bounds stale discovery connections.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// A connection whose setup (TCP, noise, yamux) has not finished in this long fails: a dial
/// lost in a partition must not hold back the next attempt for long (libp2p's default is
/// 10 s), while a slow wide-area handshake of a few round trips still fits.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `start` waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Unpublished messages kept while no peer is subscribed.
const PENDING_MAX_MESSAGES: usize = 1024;
/// Byte bound of the same queue (a handful of full-size proposals plus votes).
const PENDING_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Queued messages older than this are stale for consensus and dropped.
const PENDING_TTL: Duration = Duration::from_secs(120);
/// How long a peer of another chain is refused; it will not change chains soon.
const WRONG_CHAIN_BAN: Duration = Duration::from_secs(600);
/// How long a penalized peer is refused.
const PENALTY_BAN: Duration = Duration::from_secs(120);
/// How often the peer table is written while the node runs (if it changed); it is also
/// written at shutdown.
const PEER_TABLE_SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// Saved peers dialled at start, and again while the node has no peer, most recent first.
const SAVED_PEERS_DIALLED: usize = 8;
/// Dialled addresses remembered per connected peer, for the peer table.
const DIALLED_ADDRS_PER_PEER: usize = 4;

/// What the task knows about a connected peer.
#[derive(Default)]
struct PeerState {
    connections: HashMap<ConnectionId, Multiaddr>,
    /// Addresses we dialled it at and reached (proven reachable), for the peer table.
    dialled: Vec<Multiaddr>,
    agent: Option<String>,
    protocol_version: Option<String>,
    /// `PeerConnected` was emitted (identify confirmed the chain).
    announced: bool,
}

struct Task {
    swarm: Swarm<Behaviour>,
    protocols: Protocols,
    topics: HashMap<gossipsub::TopicHash, Topic>,
    topic_hashes: HashMap<Topic, gossipsub::TopicHash>,
    /// Bootstrap addresses without a peer id, dialled while the node has no peer.
    anonymous_bootstrap: Vec<Multiaddr>,
    /// Bootstrap peers named by id, redialled whenever not connected while below
    /// `max_peers`.
    bootstrap: Redials,
    max_peers: usize,
    /// Peers redialled whenever not connected.
    persistent: Redials,
    /// The peers reached, saved across restarts (if configured).
    peer_table: Option<PeerTable>,
    /// Saved peers seeded into Kademlia that its `RoutingUpdated` must not dial (only the
    /// most recent few are dialled at start).
    quiet_seeds: HashSet<PeerId>,
    /// A periodic save of the peer table still writing.
    peer_table_save: Option<tokio::task::JoinHandle<()>>,
    events: mpsc::Sender<NetEvent>,
    /// Payload bytes in the event channel, shared with [`NetEvents`].
    event_bytes: Arc<AtomicUsize>,
    commands: mpsc::Receiver<Command>,
    controls: mpsc::UnboundedReceiver<Control>,
    peers: HashMap<PeerId, PeerState>,
    banned: HashMap<PeerId, Instant>,
    outbound:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    pending: PendingQueue,
    libp2p_metrics: Metrics,
    metrics: NetMetrics,
}

pub(crate) async fn start(
    config: NetConfig,
    registry: &mut Registry,
) -> Result<(NetHandle, NetEvents), NetError> {
    let discovery = config.discovery.clone();
    let protocols = Protocols::new(&config.chain_id)?;
    if config.max_peers == 0 {
        return Err(NetError::Config("max_peers must be at least 1".into()));
    }
    if config.max_inbound > config.max_peers {
        return Err(NetError::Config(format!(
            "max_inbound ({}) must not exceed max_peers ({})",
            config.max_inbound, config.max_peers
        )));
    }
    if config.listen.is_empty() {
        return Err(NetError::Config("no listen address".into()));
    }
    let local_peer_id = config.keypair.public().to_peer_id();
    let external = external_addresses(&discovery.external_addresses, local_peer_id)?;
    let persistent = persistent_peers(&discovery.persistent_peers, local_peer_id)?;

    let behaviour = Behaviour::new(
        &config.keypair,
        &config,
        &protocols,
        !external.is_empty(),
        registry,
    )?;
    if let Some(latency) = config.latency {
        tracing::warn!(
            one_way = ?latency.one_way,
            jitter = ?latency.jitter,
            "latency injector on: every received byte is delayed (benchmarks only)"
        );
    }
    let mut swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_other_transport(|keypair| crate::transport::tcp_noise_yamux(keypair, config.latency))
        .map_err(|e| NetError::Transport(format!("tcp/noise: {e}")))?
        .with_dns()
        .map_err(|e| NetError::Transport(format!("dns: {e}")))?
        .with_bandwidth_metrics(registry.sub_registry_with_prefix("libp2p"))
        .with_behaviour(|_| behaviour)
        .unwrap_or_else(|never| match never {})
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .with_connection_timeout(CONNECTION_TIMEOUT)
        .build();

    let mut topics = HashMap::new();
    let mut topic_hashes = HashMap::new();
    for topic in Topic::ALL {
        let ident = gossipsub::IdentTopic::new(topic.name(&config.chain_id));
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&ident)
            .map_err(|e| NetError::Config(format!("subscribe to {ident}: {e}")))?;
        let hash = topic_hash(topic, &config.chain_id);
        topics.insert(hash.clone(), topic);
        topic_hashes.insert(topic, hash);
    }

    let mut listeners = HashSet::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Transport(format!("listen on {addr}: {e}")))?;
        listeners.insert(id);
    }
    // Confirmed by the operator: identify announces them (and nothing else, see above).
    for addr in &external {
        swarm.add_external_address(addr.clone());
    }

    let mut bootstrap: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
    let mut anonymous_bootstrap = Vec::new();
    for addr in &config.bootstrap {
        let mut transport_addr = addr.clone();
        let peer = match transport_addr.pop() {
            Some(Protocol::P2p(peer)) => Some(peer),
            _ => {
                transport_addr = addr.clone();
                None
            }
        };
        // Testnet configs may list every validator, this one included.
        if peer == Some(local_peer_id) {
            continue;
        }
        let Some(peer) = peer else {
            anonymous_bootstrap.push(transport_addr);
            continue;
        };
        swarm
            .behaviour_mut()
            .kad
            .add_address(&peer, transport_addr.clone());
        match bootstrap.iter_mut().find(|(p, _)| *p == peer) {
            Some((_, addrs)) => addrs.push(transport_addr),
            None => bootstrap.push((peer, vec![transport_addr])),
        }
    }

    for (peer, addrs) in &persistent {
        for addr in addrs {
            swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        }
    }

    let reserved: HashSet<PeerId> = bootstrap
        .iter()
        .map(|(peer, _)| *peer)
        .chain(config.reserved.iter().copied())
        .chain(persistent.iter().map(|(peer, _)| *peer))
        .collect();
    swarm.behaviour_mut().gate.set_reserved(reserved);

    // The saved peers seed Kademlia; only the most recent few are dialled (below), the rest
    // are there for its walks.
    let peer_table = discovery
        .peer_table
        .map(|path| PeerTable::load(path, local_peer_id));
    let mut quiet_seeds = HashSet::new();
    if let Some(table) = &peer_table {
        for (i, saved) in table.peers().iter().enumerate() {
            for addr in &saved.addrs {
                swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&saved.peer, addr.clone());
            }
            if i >= SAVED_PEERS_DIALLED {
                quiet_seeds.insert(saved.peer);
            }
        }
    }
    let (event_tx, event_rx) = mpsc::channel(EVENT_CHANNEL);
    let event_bytes = Arc::new(AtomicUsize::new(0));
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CHANNEL);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let mut task = Task {
        swarm,
        protocols,
        topics,
        topic_hashes,
        anonymous_bootstrap,
        bootstrap: Redials::new(bootstrap, Instant::now()),
        max_peers: config.max_peers as usize,
        persistent: Redials::new(persistent, Instant::now()),
        peer_table,
        quiet_seeds,
        peer_table_save: None,
        events: event_tx,
        event_bytes: event_bytes.clone(),
        commands: command_rx,
        controls: control_rx,
        peers: HashMap::new(),
        banned: HashMap::new(),
        outbound: HashMap::new(),
        pending: PendingQueue::new(PENDING_MAX_MESSAGES, PENDING_MAX_BYTES, PENDING_TTL),
        libp2p_metrics: Metrics::new(registry),
        metrics: NetMetrics::new(registry.sub_registry_with_prefix("timecoin_net")),
    };
    if let Some(table) = &task.peer_table {
        task.metrics.saved_peers.set(table.peers().len() as i64);
    }
    tokio::time::timeout(LISTEN_TIMEOUT, task.wait_for_listeners(listeners))
        .await
        .map_err(|_| NetError::Transport("listeners did not report an address".into()))??;
    tracing::info!(
        peer_id = %local_peer_id,
        chain_id = %config.chain_id,
        addrs = ?task.swarm.listeners().collect::<Vec<_>>(),
        external = ?external,
        "p2p network started"
    );
    task.dial_saved_peers();
    tokio::spawn(task.run());

    Ok((
        NetHandle {
            local_peer_id,
            commands: command_tx,
            controls: control_tx,
        },
        NetEvents {
            events: event_rx,
            bytes: event_bytes,
        },
    ))
}

impl Task {
    /// Drives the swarm until every listener has an address, so `listen_addrs` is meaningful
    /// as soon as `start` returns (port 0 resolved).
    async fn wait_for_listeners(
        &mut self,
        mut waiting: HashSet<ListenerId>,
    ) -> Result<(), NetError> {
        while !waiting.is_empty() {
            let event = self.swarm.select_next_some().await;
            match &event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    waiting.remove(listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } if waiting.contains(listener_id) => {
                    return Err(NetError::Transport(format!("listener closed: {reason:?}")));
                }
                SwarmEvent::ListenerError { listener_id, error }
                    if waiting.contains(listener_id) =>
                {
                    return Err(NetError::Transport(format!("listener failed: {error}")));
                }
                _ => {}
            }
            self.handle_swarm_event(event);
        }
        Ok(())
    }

    async fn run(mut self) {
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first ticks fire at once: maintenance dials the bootstrap and persistent peers.
        let mut discovery = tokio::time::interval(DISCOVERY_INTERVAL);
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut save = tokio::time::interval_at(
            tokio::time::Instant::now() + PEER_TABLE_SAVE_INTERVAL,
            PEER_TABLE_SAVE_INTERVAL,
        );
        save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let shutdown_reply = loop {
            tokio::select! {
                // Answers to events first: a report or response queued before a query must be
                // applied before the query sees the state.
                biased;
                control = self.controls.recv() => match control {
                    Some(control) => self.handle_control(control),
                    None => break None,
                },
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.handle_command(command),
                    None => break None,
                },
                event = self.swarm.select_next_some() => self.handle_swarm_event(event),
                _ = maintenance.tick() => self.maintain(),
                _ = discovery.tick() => self.discover(),
                _ = save.tick(), if self.peer_table.is_some() => self.save_peer_table(),
            }
        };
        tracing::info!("p2p network shutting down");
        self.save_peer_table_at_shutdown().await;
        // Dropping the swarm closes every connection and listener.
        drop(self.swarm);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn handle_control(&mut self, control: Control) {
        match control {
            Control::Report {
                id,
                source,
                acceptance,
            } => self.report(&id, &source, acceptance),
            Control::Respond { channel, data } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel.0, data)
                    .is_err()
                {
                    tracing::debug!(
                        "sync response not sent: the request timed out or its connection closed"
                    );
                }
            }
            Control::Penalize { peer, reason } => {
                tracing::warn!(%peer, %reason, "penalizing peer");
                if self.ban(peer, PENALTY_BAN) {
                    self.metrics.penalized_peers.inc();
                }
            }
        }
    }

    fn report(&mut self, id: &MessageId, source: &PeerId, acceptance: Acceptance) {
        let acceptance = match acceptance {
            Acceptance::Accept => gossipsub::MessageAcceptance::Accept,
            Acceptance::Reject => gossipsub::MessageAcceptance::Reject,
            Acceptance::Ignore => gossipsub::MessageAcceptance::Ignore,
        };
        // `false` means the message already left the cache (validated too late): nothing to do.
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id.0, source, acceptance);
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data } => {
                self.pending.push(topic, data, Instant::now());
                self.flush_pending(Some(topic));
            }
            Command::Request { peer, data, reply } => {
                if data.len() > MAX_SYNC_REQUEST_BYTES {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: format!(
                            "request of {} bytes exceeds the limit of {MAX_SYNC_REQUEST_BYTES}",
                            data.len()
                        ),
                    }));
                    return;
                }
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, data);
                self.outbound.insert(id, reply);
            }
            Command::Peers { reply } => {
                let gossipsub = &self.swarm.behaviour().gossipsub;
                let peers = self
                    .peers
                    .iter()
                    .map(|(peer, state)| PeerInfo {
                        peer_id: peer.to_base58(),
                        addresses: state.connections.values().map(|a| a.to_string()).collect(),
                        agent: state.agent.clone(),
                        protocol_version: state.protocol_version.clone(),
                        gossip_score: gossipsub.peer_score(peer),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            // Handled by the loop, which stops on it.
            Command::Shutdown { .. } => {}
        }
    }

    /// Publishes queued messages (all topics, or one) to whoever is subscribed now; what cannot
    /// go out yet stays queued in order.
    fn flush_pending(&mut self, topic: Option<Topic>) {
        let mut unsent: Vec<crate::pending::PendingMessage> = Vec::new();
        for message in self.pending.take(topic, Instant::now()) {
            // Once a topic has no recipient, its later messages wait too, keeping their order.
            if unsent.iter().any(|u| u.topic == message.topic) || !self.can_publish(message.topic) {
                unsent.push(message);
                continue;
            }
            let hash = self.topic_hashes[&message.topic].clone();
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(hash, message.data)
            {
                Ok(_) => {}
                // The same content is already on the network (or was published before).
                Err(gossipsub::PublishError::Duplicate) => {}
                Err(error) => {
                    tracing::warn!(topic = ?message.topic, %error, "gossip message dropped");
                    self.metrics.dropped_publications.inc();
                }
            }
        }
        self.pending.requeue(unsent);
        self.metrics
            .pending_publications
            .set(self.pending.len() as i64);
    }

    /// Whether gossipsub would find a recipient for `topic`: a peer subscribed to it whose score
    /// is above the publish threshold. Checked first so that a message is not handed to
    /// gossipsub (which consumes it) only to fail for lack of peers.
    fn can_publish(&self, topic: Topic) -> bool {
        let hash = &self.topic_hashes[&topic];
        let gossipsub = &self.swarm.behaviour().gossipsub;
        gossipsub.all_peers().any(|(peer, topics)| {
            topics.contains(&hash)
                && gossipsub
                    .peer_score(peer)
                    .is_none_or(|score| score >= PUBLISH_THRESHOLD)
        })
    }

    fn maintain(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.banned.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        if !self.pending.is_empty() {
            self.flush_pending(None);
        }
        let swarm = &self.swarm;
        let banned = &self.banned;
        let connected = |peer: &PeerId| swarm.is_connected(peer);
        let skip = |peer: &PeerId| banned.contains_key(peer);
        let persistent = self.persistent.due(now, connected, skip);
        self.metrics
            .persistent_peer_dials
            .inc_by(persistent.len() as u64);
        let mut due = persistent;
        if self.peers.len() < self.max_peers {
            let bootstrap = self.bootstrap.due(now, connected, skip);
            self.metrics
                .bootstrap_peer_dials
                .inc_by(bootstrap.len() as u64);
            due.extend(bootstrap);
        }
        for (peer, addrs) in due {
            tracing::debug!(%peer, "dialling a persistent or bootstrap peer");
            self.dial(
                DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
        }
    }

    fn dial(&mut self, opts: DialOpts) {
        if let Err(error) = self.swarm.dial(opts) {
            tracing::debug!(%error, "dial not started");
        }
    }

    /// Refuses `peer` for `duration` (extending a running ban); returns whether it is a new ban.
    fn ban(&mut self, peer: PeerId, duration: Duration) -> bool {
        let new = self
            .banned
            .insert(peer, Instant::now() + duration)
            .is_none();
        // Blocking closes the peer's connections and refuses new ones until unblocked.
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        if let Some(table) = &mut self.peer_table {
            table.remove(&peer);
        }
        new
    }

    /// Hands an event to the node without ever blocking the swarm; returns whether it was
    /// delivered.
    fn emit(&self, event: NetEvent) -> bool {
        let size = event.payload_len();
        if self.event_bytes.load(Ordering::Relaxed) + size > EVENT_CHANNEL_BYTES {
            self.metrics.dropped_events.inc();
            tracing::warn!(
                size,
                "node is not keeping up with network events; event dropped"
            );
            return false;
        }
        // Counted before sending so that the receiver's decrement can never come first.
        self.event_bytes.fetch_add(size, Ordering::Relaxed);
        let error = match self.events.try_send(event) {
            Ok(()) => return true,
            Err(error) => error,
        };
        self.event_bytes.fetch_sub(size, Ordering::Relaxed);
        // A closed channel means the node stopped listening; it will shut us down.
        if let mpsc::error::TrySendError::Full(_) = error {
            self.metrics.dropped_events.inc();
            tracing::warn!("node is not keeping up with network events; event dropped");
        }
        false
    }
}

#[cfg(test)]
mod tests;
