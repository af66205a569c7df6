//! Real swarms over TCP on 127.0.0.1, several per test, synchronised on events with deadlines.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, noise, tcp, yamux};
use prometheus_client::registry::Registry;
use timecoin_net::{
    start, Acceptance, Discovery, Keypair, Latency, MessageLimits, Multiaddr, NetConfig, NetError,
    NetEvent, NetEvents, NetHandle, PeerId, Topic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(15);

struct Node {
    handle: NetHandle,
    events: NetEvents,
    registry: Registry,
    /// The listen address with `/p2p/<peer id>`, as a bootstrap entry.
    addr: Multiaddr,
}

impl Node {
    fn peer_id(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// Waits for the first event `pick` maps to `Some`, skipping the others.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(NetEvent) -> Option<T>) -> T {
        timeout(DEADLINE, async {
            loop {
                let event = self.events.recv().await.expect("event channel open");
                if let Some(found) = pick(event) {
                    return found;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    async fn wait_connected(&mut self, peer: PeerId) {
        self.wait_for("peer connected", |e| match e {
            NetEvent::PeerConnected(p) if p == peer => Some(()),
            _ => None,
        })
        .await;
    }

    /// Waits until each of `peers` has been reported connected, in any order.
    async fn wait_connected_all(&mut self, peers: &[PeerId]) {
        let mut missing: HashSet<PeerId> = peers.iter().copied().collect();
        self.wait_for("peers connected", |e| {
            if let NetEvent::PeerConnected(p) = e {
                missing.remove(&p);
            }
            missing.is_empty().then_some(())
        })
        .await;
    }

    async fn wait_disconnected(&mut self, peer: PeerId) {
        self.wait_for("peer disconnected", |e| match e {
            NetEvent::PeerDisconnected(p) if p == peer => Some(()),
            _ => None,
        })
        .await;
    }

    /// Waits for the next gossip message on a topic `wanted` accepts (skipping the others),
    /// returning its topic, payload and forwarder after reporting `acceptance`.
    async fn next_gossip_on(
        &mut self,
        wanted: impl Fn(Topic) -> bool,
        acceptance: Acceptance,
    ) -> (Topic, Vec<u8>, PeerId) {
        let handle = self.handle.clone();
        self.wait_for("gossip", |e| match e {
            NetEvent::Gossip {
                topic,
                data,
                id,
                source,
            } if wanted(topic) => {
                handle.report(id, source, acceptance);
                Some((topic, data, source))
            }
            _ => None,
        })
        .await
    }

    /// Waits for the next gossip message on `topic`, returning its payload after reporting
    /// `acceptance`.
    async fn next_gossip(&mut self, topic: Topic, acceptance: Acceptance) -> (Vec<u8>, PeerId) {
        let (_, data, source) = self.next_gossip_on(|t| t == topic, acceptance).await;
        (data, source)
    }

    /// Receives (and accepts) one message per topic, `<prefix>:<kind>`, from `source`.
    async fn expect_one_per_topic(&mut self, prefix: &str, source: PeerId) {
        let mut seen = Vec::new();
        while seen.len() < Topic::ALL.len() {
            let (topic, data, from) = self.next_gossip_on(|_| true, Acceptance::Accept).await;
            assert_eq!(data, format!("{prefix}:{}", topic.kind()).into_bytes());
            assert_eq!(from, source);
            assert!(!seen.contains(&topic), "{topic:?} delivered twice");
            seen.push(topic);
        }
    }

    /// Waits until this node's gossip score of `peer` is below `threshold`.
    async fn wait_score_below(&self, peer: PeerId, threshold: f64, what: &str) {
        let peer = peer.to_base58();
        eventually(what, || async {
            self.handle
                .peers()
                .await
                .iter()
                .any(|p| p.peer_id == peer && p.gossip_score.is_some_and(|s| s < threshold))
        })
        .await;
    }

    /// The value of a metric in the node's registry (0 if absent).
    fn metric(&self, name: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }
}

fn config(chain_id: &str, bootstrap: &[&Node], max_peers: u32) -> NetConfig {
    NetConfig {
        chain_id: chain_id.into(),
        keypair: Keypair::generate_ed25519(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: bootstrap.iter().map(|n| n.addr.clone()).collect(),
        max_peers,
        reserved: Vec::new(),
        max_inbound: max_peers,
        max_inbound_per_ip: max_peers,
        max_message_bytes: MessageLimits {
            proposal: 1 << 20,
            vote: 1 << 10,
            tx: 1 << 16,
        },
        max_sync_response_bytes: 1 << 20,
        discovery: Discovery::default(),
        latency: None,
    }
}

async fn spawn(config: NetConfig) -> Node {
    let mut registry = Registry::default();
    let (handle, events) = start(config, &mut registry).await.expect("network starts");
    node(handle, events, registry).await
}

async fn spawn_with(config: NetConfig, discovery: Discovery) -> Node {
    spawn(NetConfig {
        discovery,
        ..config
    })
    .await
}

async fn node(handle: NetHandle, events: NetEvents, registry: Registry) -> Node {
    let listen = handle.listen_addrs().await;
    assert!(!listen.is_empty(), "listen address reported at start");
    let addr = listen[0]
        .clone()
        .with(Protocol::P2p(handle.local_peer_id()));
    Node {
        handle,
        events,
        registry,
        addr,
    }
}

fn tcp_port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("tcp address")
}

/// Polls `check` until it holds, failing after the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    timeout(DEADLINE, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_on_every_topic_in_both_directions() {
    let mut a = spawn(config("gossip", &[], 8)).await;
    // Published before any peer exists: queued, then flushed when `b` subscribes.
    for topic in Topic::ALL {
        a.handle
            .publish(topic, format!("a:{}", topic.kind()).into_bytes())
            .await;
    }
    let mut b = spawn(config("gossip", &[&a], 8)).await;
    // Queued messages are flushed per topic as subscriptions arrive, in no fixed topic order.
    b.expect_one_per_topic("a", a.peer_id()).await;
    for topic in Topic::ALL {
        b.handle
            .publish(topic, format!("b:{}", topic.kind()).into_bytes())
            .await;
    }
    a.expect_one_per_topic("b", b.peer_id()).await;

    // Publishing the same content twice is not an error and sends it once.
    a.handle.publish(Topic::Tx, b"dup".to_vec()).await;
    a.handle.publish(Topic::Tx, b"dup".to_vec()).await;
    a.handle.publish(Topic::Tx, b"after".to_vec()).await;
    assert_eq!(b.next_gossip(Topic::Tx, Acceptance::Accept).await.0, b"dup");
    assert_eq!(
        b.next_gossip(Topic::Tx, Acceptance::Accept).await.0,
        b"after"
    );

    let peers = a.handle.peers().await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id, b.peer_id().to_base58());
    assert_eq!(
        peers[0].protocol_version.as_deref(),
        Some("/timecoin/gossip/1.0.0")
    );
    assert!(peers[0].agent.as_deref().unwrap().starts_with("timed/"));
    assert_eq!(a.metric("timecoin_net_connected_peers"), 1.0);
    // One registry for libp2p's and our metrics: every metric family must appear once.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &a.registry).unwrap();
    let mut families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let count = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(families.len(), count, "duplicate metric families:\n{text}");
    assert!(text.contains("libp2p_gossipsub"), "{text}");

    a.handle.shutdown().await;
    b.wait_for("disconnect after shutdown", |e| {
        matches!(e, NetEvent::PeerDisconnected(p) if p == a.peer_id()).then_some(())
    })
    .await;
    assert!(a.handle.peers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_accepted_messages_are_forwarded() {
    // a - b - c in a line: a and c allow one peer each, so c hears a only through b.
    let mut b = spawn(config("relay", &[], 8)).await;
    let mut a = spawn(config("relay", &[&b], 1)).await;
    let mut c = spawn(config("relay", &[&b], 1)).await;
    a.wait_connected(b.peer_id()).await;
    c.wait_connected(b.peer_id()).await;
    // b must know c's subscriptions before it forwards anything, or c is not yet a recipient.
    // They precede c's own messages on the wire, so a message from c proves it.
    c.handle
        .publish(Topic::Prepare, b"c is here".to_vec())
        .await;
    let (data, _) = b.next_gossip(Topic::Prepare, Acceptance::Ignore).await;
    assert_eq!(data, b"c is here");

    a.handle.publish(Topic::Prepare, b"bad vote".to_vec()).await;
    let (data, source) = b.next_gossip(Topic::Prepare, Acceptance::Reject).await;
    assert_eq!((data.as_slice(), source), (&b"bad vote"[..], a.peer_id()));
    // The rejection lowers a's score in b's eyes.
    b.wait_score_below(a.peer_id(), 0.0, "a's score drops")
        .await;

    a.handle
        .publish(Topic::Prepare, b"good vote".to_vec())
        .await;
    let (data, _) = b.next_gossip(Topic::Prepare, Acceptance::Accept).await;
    assert_eq!(data, b"good vote");

    // The first (and only) message c sees is the accepted one, relayed by b.
    let (data, source) = c.next_gossip(Topic::Prepare, Acceptance::Accept).await;
    assert_eq!(data, b"good vote");
    assert_eq!(source, b.peer_id());
    let a_peers = a.handle.peers().await;
    assert_eq!(
        a_peers.len(),
        1,
        "max_peers = 1 keeps a connected to b only"
    );

    // Repeat offences sink a's score: b stops sending it anything below -50, and from the
    // third rejected message (-90, decaying slowly) b drops its RPCs altogether (graylist, -80).
    for i in 0..2 {
        let bad = format!("bad vote {i}").into_bytes();
        a.handle.publish(Topic::Prepare, bad.clone()).await;
        assert_eq!(
            b.next_gossip(Topic::Prepare, Acceptance::Reject).await.0,
            bad
        );
    }
    b.wait_score_below(a.peer_id(), -50.0, "a is below the publish threshold")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bootstrap_address_finds_the_rest_through_kademlia() {
    let mut hub = spawn(config("kad", &[], 8)).await;
    let c = spawn(config("kad", &[&hub], 8)).await;
    hub.wait_connected(c.peer_id()).await;

    let mut a = spawn(config("kad", &[&hub], 8)).await;
    a.wait_connected(c.peer_id()).await;
    let peers = a.handle.peers().await;
    assert!(peers.iter().any(|p| p.peer_id == hub.peer_id().to_base58()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_round_trip_size_limit_and_penalty() {
    let mut server = spawn(config("sync", &[], 8)).await;
    let mut client_config = config("sync", &[], 8);
    // Bootstrap through a DNS name.
    let port = tcp_port(&server.addr);
    client_config.bootstrap = vec![
        format!("/dns4/localhost/tcp/{port}/p2p/{}", server.peer_id())
            .parse()
            .unwrap(),
    ];
    client_config.max_sync_response_bytes = 1024;
    let mut client = spawn(client_config).await;
    server.wait_connected(client.peer_id()).await;
    client.wait_connected(server.peer_id()).await;

    let server_handle = server.handle.clone();
    let server_id = server.peer_id();
    let mut server_events = server.events;
    let responder = tokio::spawn(async move {
        while let Some(event) = server_events.recv().await {
            match event {
                NetEvent::SyncRequest {
                    request, channel, ..
                } => {
                    let size = if request == b"small" { 1000 } else { 4096 };
                    server_handle.respond(channel, vec![7; size]);
                }
                NetEvent::PeerDisconnected(peer) => return peer,
                _ => {}
            }
        }
        panic!("event channel closed");
    });

    let response = client
        .handle
        .request(server_id, b"small".to_vec())
        .await
        .unwrap();
    assert_eq!(response, vec![7; 1000]);

    let err = client
        .handle
        .request(server_id, b"big".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::Request { reason, .. } if reason.contains("exceeds the limit")),
        "{err}"
    );

    let err = client
        .handle
        .request(server_id, vec![0; 100_000])
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Request { .. }), "{err}");

    // A bad response gets the server disconnected and banned.
    client.handle.penalize(server_id, "oversize sync response");
    let gone = timeout(DEADLINE, responder).await.unwrap().unwrap();
    assert_eq!(gone, client.peer_id());
    assert_eq!(client.metric("timecoin_net_penalized_peers_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_another_chain_are_disconnected() {
    let mut a = spawn(config("main", &[], 8)).await;
    let stranger = spawn(config("other", &[&a], 8)).await;
    // Whichever side reads the other's identify record first drops the connection.
    let dropped = |n: &Node| n.metric("timecoin_net_wrong_chain_peers_total") >= 1.0;
    eventually("one side drops the other", || async {
        dropped(&a) || dropped(&stranger)
    })
    .await;
    let stranger_id = stranger.peer_id().to_base58();
    eventually("the stranger's connection is closed", || async {
        !a.handle
            .peers()
            .await
            .iter()
            .any(|p| p.peer_id == stranger_id)
    })
    .await;

    // A peer of the same chain still connects, and the stranger was never announced.
    let b = spawn(config("main", &[&a], 8)).await;
    let stranger_peer = stranger.peer_id();
    a.wait_for("same-chain peer", |e| match e {
        NetEvent::PeerConnected(p) if p == stranger_peer => panic!("stranger announced"),
        NetEvent::PeerConnected(p) if p == b.peer_id() => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tcp_port_is_dropped() {
    let mut a = spawn(config("garbage", &[], 8)).await;
    let port = tcp_port(&a.addr);
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    // The node may already have closed its side while we write; either way is fine.
    let _ = socket.write_all(&garbage).await;
    let mut sink = Vec::new();
    timeout(DEADLINE, socket.read_to_end(&mut sink))
        .await
        .expect("the node closes the connection")
        .ok();

    // Still healthy: a real peer connects and gossips.
    let b = spawn(config("garbage", &[&a], 8)).await;
    a.wait_connected(b.peer_id()).await;
    b.handle.publish(Topic::Tx, b"still alive".to_vec()).await;
    let (data, _) = a.next_gossip(Topic::Tx, Acceptance::Accept).await;
    assert_eq!(data, b"still alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_per_topic() {
    let mut b = spawn(config("sizes", &[], 8)).await;
    // a would publish votes up to 64 KiB; b's limit (the protocol's, in this test) is 1 KiB.
    let mut a_config = config("sizes", &[&b], 8);
    a_config.max_message_bytes.vote = 1 << 16;
    let a = spawn(a_config).await;
    b.wait_connected(a.peer_id()).await;
    // a's subscriptions reach b before its first message, and b's reach a: a message a sends
    // b proves both directions are ready.
    a.handle.publish(Topic::Tx, b"hello".to_vec()).await;
    b.next_gossip(Topic::Tx, Acceptance::Accept).await;

    // 2 KiB is fine for a transaction but not for a vote: b never sees the vote, and a's
    // score drops for sending it.
    a.handle.publish(Topic::Prepare, vec![1; 2048]).await;
    a.handle.publish(Topic::Tx, vec![2; 2048]).await;
    let (data, _) = b.next_gossip(Topic::Tx, Acceptance::Accept).await;
    assert_eq!(data, vec![2; 2048]);
    b.wait_score_below(a.peer_id(), 0.0, "a's score drops")
        .await;
    // A vote within the limit still arrives, and it is the first vote b sees.
    a.handle.publish(Topic::Prepare, vec![3; 512]).await;
    let (data, _) = b.next_gossip(Topic::Prepare, Acceptance::Accept).await;
    assert_eq!(data, vec![3; 512]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_from_one_address_cannot_crowd_out_a_reserved_peer() {
    let friend_config = config("crowd", &[], 16);
    let friend_key = friend_config.keypair.clone();
    let friend = spawn(friend_config).await;
    // The validator names `friend` as a bootstrap peer, which reserves it, lists `sentry` as
    // a reserved peer, and admits at most two inbound connections of other peers from one
    // address.
    let sentry_key = Keypair::generate_ed25519();
    let mut validator_config = config("crowd", &[&friend], 8);
    validator_config.reserved = vec![sentry_key.public().to_peer_id()];
    validator_config.max_inbound = 6;
    validator_config.max_inbound_per_ip = 2;
    let mut validator = spawn(validator_config).await;
    validator.wait_connected(friend.peer_id()).await;

    // Twelve fresh peer ids dial in from 127.0.0.1.
    let mut strangers = Vec::new();
    for _ in 0..12 {
        strangers.push(spawn(config("crowd", &[&validator], 8)).await);
    }
    eventually("the validator refuses strangers beyond two", || async {
        validator.metric("timecoin_net_refused_connections_total") >= 10.0
    })
    .await;

    // The friend restarts (same peer id, new port) and dials in from the crowded address:
    // reserved, it is admitted.
    friend.handle.shutdown().await;
    let friend = spawn(NetConfig {
        keypair: friend_key,
        ..config("crowd", &[&validator], 16)
    })
    .await;
    validator.wait_connected(friend.peer_id()).await;
    // So is the sentry, which the validator never dials itself.
    let sentry = spawn(NetConfig {
        keypair: sentry_key,
        ..config("crowd", &[&validator], 16)
    })
    .await;
    validator.wait_connected(sentry.peer_id()).await;
    let peers = validator.handle.peers().await;
    assert!(peers.len() <= 8, "max_peers holds: {}", peers.len());
}

/// A bare client: identify, and ping so that the node does not close the connection for
/// want of it.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct IdentifyClient {
    identify: identify::Behaviour,
    ping: libp2p::ping::Behaviour,
}

/// What `target` tells a bare identify client (speaking `chain`'s identify version) about
/// itself.
async fn identify_info(chain: &str, target: &Node) -> identify::Info {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| IdentifyClient {
            identify: identify::Behaviour::new(identify::Config::new(
                format!("/timecoin/{chain}/1.0.0"),
                key.public(),
            )),
            ping: libp2p::ping::Behaviour::default(),
        })
        .unwrap()
        // Nothing else keeps the connection open until identify has answered.
        .with_swarm_config(|c| c.with_idle_connection_timeout(DEADLINE))
        .build();
    swarm.dial(target.addr.clone()).unwrap();
    let target = target.peer_id();
    timeout(DEADLINE, async {
        loop {
            if let SwarmEvent::Behaviour(IdentifyClientEvent::Identify(
                identify::Event::Received { peer_id, info, .. },
            )) = swarm.select_next_some().await
            {
                if peer_id == target {
                    return info;
                }
            }
        }
    })
    .await
    .expect("identify info received")
}

fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(_)) = addr.iter().last() {
        addr.pop();
    }
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_addresses_replace_the_listen_addresses_in_identify() {
    let external: Multiaddr = "/ip4/203.0.113.7/tcp/26656".parse().unwrap();
    let announcing = spawn_with(
        config("external", &[], 8),
        Discovery {
            external_addresses: vec![external.clone()],
            ..Discovery::default()
        },
    )
    .await;
    let info = identify_info("external", &announcing).await;
    assert_eq!(info.listen_addrs, vec![external]);

    // Without external addresses a node announces what it listens on, as before.
    let plain = spawn(config("external", &[], 8)).await;
    let info = identify_info("external", &plain).await;
    assert_eq!(info.listen_addrs, vec![without_p2p(&plain.addr)]);
}

/// How `a` knows `b` in [`a_peer_that_comes_back_is_redialled`].
enum Known {
    Persistent,
    Bootstrap,
}

/// `a` knows `b` only as `known` (no other discovery joins them); `b` goes away and comes
/// back at the same address, knowing nobody, and `a` reconnects by redialling it.
async fn a_peer_that_comes_back_is_redialled(known: Known) {
    let b_config = config("redial", &[], 8);
    let b_key = b_config.keypair.clone();
    let b = spawn(b_config).await;
    let port = tcp_port(&b.addr);
    let (mut a, dials_metric) = match known {
        Known::Persistent => (
            spawn_with(
                config("redial", &[], 8),
                Discovery {
                    persistent_peers: vec![b.addr.clone()],
                    ..Discovery::default()
                },
            )
            .await,
            "timecoin_net_persistent_peer_dials_total",
        ),
        Known::Bootstrap => (
            spawn(config("redial", &[&b], 8)).await,
            "timecoin_net_bootstrap_peer_dials_total",
        ),
    };
    a.wait_connected(b.peer_id()).await;

    b.handle.shutdown().await;
    a.wait_disconnected(b.peer_id()).await;
    // a keeps dialling while b is down, the backoff growing to its one-second cap: four
    // dials within the deadline (the DHT walk of `discover`, every 10 s, would not make
    // them). Dials are a quarter of a second apart at least and one to a closed local port
    // fails at once, so they all failed but perhaps the last.
    let dials = a.metric(dials_metric);
    eventually("a redials b while it is down", || async {
        a.metric(dials_metric) >= dials + 4.0
    })
    .await;

    // b comes back at the same address, knowing nobody (so only a can dial); a reconnects.
    let b = spawn(NetConfig {
        keypair: b_key,
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()],
        ..config("redial", &[], 8)
    })
    .await;
    a.wait_connected(b.peer_id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_peer_that_comes_back_is_redialled() {
    a_peer_that_comes_back_is_redialled(Known::Persistent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_peer_that_comes_back_is_redialled() {
    a_peer_that_comes_back_is_redialled(Known::Bootstrap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_finds_its_peers_in_the_saved_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("peers.json");
    // A corrupt table is ignored (and replaced at the next save).
    std::fs::write(&table, b"{ not a peer table").unwrap();
    let x = spawn(config("table", &[], 8)).await;
    let mut y = spawn(config("table", &[&x], 8)).await;
    y.wait_connected(x.peer_id()).await;

    // r bootstraps from x and finds y through Kademlia.
    let r_key = Keypair::generate_ed25519();
    let discovery = Discovery {
        peer_table: Some(table.clone()),
        ..Discovery::default()
    };
    let mut r = spawn_with(
        NetConfig {
            keypair: r_key.clone(),
            ..config("table", &[&x], 8)
        },
        discovery.clone(),
    )
    .await;
    r.wait_connected_all(&[x.peer_id(), y.peer_id()]).await;
    // Written at shutdown, which returns once the table is on disk and the swarm gone.
    r.handle.shutdown().await;
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&table).unwrap()).expect("the saved table is JSON");
    let saved_ids: HashSet<&str> = saved["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    let (x_id, y_id) = (x.peer_id().to_base58(), y.peer_id().to_base58());
    assert_eq!(saved_ids, HashSet::from([x_id.as_str(), y_id.as_str()]));

    // Restarted on another port with no bootstrap peer: x and y cannot know where it is, so
    // the connections are r's own dials of its saved peers.
    let mut r = spawn_with(
        NetConfig {
            keypair: r_key,
            ..config("table", &[], 8)
        },
        discovery,
    )
    .await;
    r.wait_connected_all(&[x.peer_id(), y.peer_id()]).await;
    r.handle.shutdown().await;
}

/// Accepts connections on `listener` and pipes each to `target`; counts them.
fn forward(listener: tokio::net::TcpListener, target: u16) -> Arc<AtomicUsize> {
    let forwarded = Arc::new(AtomicUsize::new(0));
    let count = forwarded.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    forwarded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reachable_only_at_its_announced_address_is_found_and_dialled() {
    let mut hub = spawn(config("announced", &[], 8)).await;
    // The "public" address: 127.0.0.2, forwarded to the node's real listener on 127.0.0.1
    // (like a NAT's port forwarding).
    let public = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let public_port = public.local_addr().unwrap().port();
    let announced: Multiaddr = format!("/ip4/127.0.0.2/tcp/{public_port}").parse().unwrap();

    // `hidden` dials the hub (so the hub learns its address only from identify) and is kept
    // from dialling anyone else (one peer at most, the hub); the newcomer is reserved so that
    // it is admitted all the same.
    let newcomer_key = Keypair::generate_ed25519();
    let mut hidden_config = config("announced", &[&hub], 1);
    hidden_config.reserved = vec![newcomer_key.public().to_peer_id()];
    let hidden = spawn_with(
        hidden_config,
        Discovery {
            external_addresses: vec![announced.clone()],
            ..Discovery::default()
        },
    )
    .await;
    let forwarded = forward(public, tcp_port(&hidden.addr));
    hub.wait_connected(hidden.peer_id()).await;

    // The newcomer knows only the hub; Kademlia tells it the announced address.
    let mut newcomer = spawn(NetConfig {
        keypair: newcomer_key,
        ..config("announced", &[&hub], 8)
    })
    .await;
    newcomer.wait_connected(hidden.peer_id()).await;
    assert!(forwarded.load(Ordering::SeqCst) >= 1);
    let hidden_id = hidden.peer_id().to_base58();
    let peers = newcomer.handle.peers().await;
    let entry = peers.iter().find(|p| p.peer_id == hidden_id).unwrap();
    assert!(
        entry
            .addresses
            .iter()
            .any(|a| a.starts_with(&announced.to_string())),
        "{:?}",
        entry.addresses
    );
}

/// The `i`-th byte of a test payload: not periodic in any frame or chunk size.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 8) ^ (i >> 16)) as u8
}

/// Both ends inject 100 ms one way: every sync round trip takes at least two of them, and a
/// request and a response of several frames arrive intact and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_injector_delays_round_trips_and_keeps_every_byte() {
    let latency = Latency {
        one_way: Duration::from_millis(100),
        jitter: Duration::from_millis(10),
    };
    let delayed = |bootstrap: &[&Node]| NetConfig {
        latency: Some(latency),
        ..config("latency", bootstrap, 8)
    };
    let mut server = spawn(delayed(&[])).await;
    let mut client = spawn(delayed(&[&server])).await;
    server.wait_connected(client.peer_id()).await;
    client.wait_connected(server.peer_id()).await;

    let request: Vec<u8> = (0..60_000).map(pattern).collect();
    let response: Vec<u8> = (0..900_000).map(|i| pattern(i + 7)).collect();
    let server_id = server.peer_id();
    let server_handle = server.handle.clone();
    let mut server_events = server.events;
    let (expected_request, answer) = (request.clone(), response.clone());
    tokio::spawn(async move {
        while let Some(event) = server_events.recv().await {
            if let NetEvent::SyncRequest {
                request, channel, ..
            } = event
            {
                // A damaged request gets an empty answer, which the client refuses below.
                let reply = if request == expected_request {
                    answer.clone()
                } else {
                    Vec::new()
                };
                server_handle.respond(channel, reply);
            }
        }
    });

    for _ in 0..3 {
        let sent = Instant::now();
        let got = timeout(DEADLINE, client.handle.request(server_id, request.clone()))
            .await
            .expect("response within the deadline")
            .expect("response");
        let elapsed = sent.elapsed();
        assert!(
            elapsed >= 2 * latency.one_way,
            "round trip of {elapsed:?} with {:?} each way",
            latency.one_way
        );
        assert_eq!(got.len(), response.len());
        assert!(got == response, "response bytes changed or reordered");
    }
}
