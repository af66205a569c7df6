//! The adversary: hostile peers built on the real protocol stack, for tests that attack real
//! `timed` processes.
//!
//! Every hostile peer is a `timecoin_net` swarm (so it speaks exactly the node's protocols:
//! gossipsub topics, Kademlia, identify, the sync request-response protocol), and every message
//! it sends is built from the node's own wire types ([`timed::wire`]) and signed with real keys.
//! Nothing of the node is copied. Everything runs inside the test process, over TCP on
//! 127.0.0.1 only, and every loop is bounded both in count and in time ([`LIFETIME`]).

// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

pub mod snapshot;

use rand::RngCore;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timecoin_ledger::{
    Block, Genesis, GenesisValidator, OutPoint, Store, Transaction, TxInput, TxOutput,
    MIN_COLLATERAL,
};
use timecoin_net::{
    Acceptance, Keypair as PeerKeypair, MessageId, MessageLimits, Multiaddr, NetConfig, NetEvent,
    NetEvents, NetHandle, PeerId, ResponseToken, Topic,
};
use timecoin_types::{
    codec, Address, Certificate, CommitSignature, Hash256, Keypair, Proposal, Signature, Vote,
    VoteKind,
};
use timed::wire::{
    ProposalMessage, SyncRequest, SyncResponse, SyncedBlock, VoteMessage, GOSSIP_LIMITS,
    MAX_SYNC_BATCH, MAX_SYNC_RESPONSE_BYTES,
};
use tokio::time::{sleep, timeout, Instant};

/// The longest any adversary task runs; past it, it stops whatever it was doing.
pub const LIFETIME: Duration = Duration::from_secs(150);
/// Most events one adversary task handles before it stops.
const MAX_EVENTS: u64 = 1_000_000;
/// Messages published per pacing tick by the floods.
const BURST: u64 = 10;
/// The pacing tick of the floods: `BURST` messages every tick is about 1,000 a second.
const PACE: Duration = Duration::from_millis(10);

/// Limits large enough to publish anything the tests need, oversized messages included.
pub const LOOSE_LIMITS: MessageLimits = MessageLimits {
    proposal: 2 * GOSSIP_LIMITS.proposal,
    vote: 16 * GOSSIP_LIMITS.vote,
    tx: 2 * GOSSIP_LIMITS.tx,
};

/// One hostile libp2p identity: a swarm of the real network stack.
pub struct Swarm {
    /// The swarm's handle.
    pub net: NetHandle,
    /// Where it listens, ending in `/p2p/<its peer id>`.
    pub addr: Multiaddr,
}

impl Swarm {
    /// Its peer id.
    pub fn id(&self) -> PeerId {
        self.net.local_peer_id()
    }
}

/// Starts a swarm with a fresh identity on `127.0.0.1:port` (0 picks a free port) that dials
/// `bootstrap` (reserved in its own connection gate) and keeps at most `max_peers`
/// connections.
pub async fn swarm(
    chain_id: &str,
    port: u16,
    bootstrap: Vec<Multiaddr>,
    max_peers: u32,
    limits: MessageLimits,
) -> (Swarm, NetEvents) {
    let mut registry = prometheus_client::registry::Registry::default();
    let config = NetConfig {
        chain_id: chain_id.to_string(),
        keypair: PeerKeypair::generate_ed25519(),
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}")
            .parse()
            .expect("address")],
        bootstrap,
        max_peers,
        reserved: Vec::new(),
        max_inbound: max_peers,
        max_inbound_per_ip: max_peers,
        max_message_bytes: limits,
        max_sync_response_bytes: MAX_SYNC_RESPONSE_BYTES,
        discovery: Default::default(),
        latency: None,
    };
    let (net, events) = timecoin_net::start(config, &mut registry)
        .await
        .expect("adversary swarm starts");
    let listen = net.listen_addrs().await;
    let addr = format!("{}/p2p/{}", listen[0], net.local_peer_id())
        .parse()
        .expect("address");
    (Swarm { net, addr }, events)
}

/// The peer id of the node whose home is `home`.
pub fn node_peer(home: &Path) -> PeerId {
    timed::keys::read_node_identity(&home.join("node.key"))
        .expect("node key")
        .public()
        .to_peer_id()
}

/// The dialable address of the node whose home is `home`, listening on loopback `port`.
pub fn node_addr(home: &Path, port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", node_peer(home))
        .parse()
        .expect("address")
}

/// Waits until `net` is connected to every peer of `peers`, identified (so subscriptions have
/// been exchanged), for at most `within`; returns whether it is.
pub async fn connected(net: &NetHandle, peers: &[PeerId], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let known = net.peers().await;
        let all = peers.iter().all(|p| {
            known
                .iter()
                .any(|k| k.peer_id == p.to_base58() && k.agent.is_some())
        });
        if all {
            return true;
        }
        // The poll interval of a wait bounded by `within`.
        sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Asks `peer` for its finalized tip over the sync protocol.
pub async fn tip_of(net: &NetHandle, peer: PeerId) -> Option<u64> {
    let bytes = net
        .request(peer, codec::encode(&SyncRequest::Status))
        .await
        .ok()?;
    match codec::decode(&bytes, MAX_SYNC_RESPONSE_BYTES).ok()? {
        SyncResponse::Status { tip, .. } => Some(tip),
        _ => None,
    }
}

/// `n` random bytes.
pub fn garbage(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    // 0xff alone is a CBOR "break": whatever follows, no value decodes from it.
    if let Some(first) = bytes.first_mut() {
        *first = 0xff;
    }
    bytes
}

/// The event loop of the adversary tasks that serve a swarm: runs `on_gossip(topic, data, id,
/// source)` on each gossip message and `on_sync(peer, request, channel)` on each sync request
/// of `events`, one at a time, for at most [`MAX_EVENTS`] events. Its callers spawn it under
/// [`LIFETIME`] (there the compiler sees their handlers, and so that the task is `Send`).
async fn event_loop(
    mut events: NetEvents,
    mut on_gossip: impl AsyncFnMut(Topic, Vec<u8>, MessageId, PeerId),
    mut on_sync: impl AsyncFnMut(PeerId, Vec<u8>, ResponseToken),
) {
    for _ in 0..MAX_EVENTS {
        match events.recv().await {
            Some(NetEvent::Gossip {
                topic,
                data,
                id,
                source,
            }) => on_gossip(topic, data, id, source).await,
            Some(NetEvent::SyncRequest {
                peer,
                request,
                channel,
            }) => on_sync(peer, request, channel).await,
            Some(_) => {}
            None => break,
        }
    }
}

/// Drains `events` for as long as the swarm lives: gossip is dropped without penalty (and not
/// forwarded), sync requests are answered with an error. Keeps a swarm that only attacks from
/// filling its event channel.
pub fn spawn_drain(net: &NetHandle, events: NetEvents) {
    spawn_drain_observing(net, events, |_, _| {});
}

/// [`spawn_drain`], showing each gossip message's topic and payload to `observe` first.
fn spawn_drain_observing(
    net: &NetHandle,
    events: NetEvents,
    mut observe: impl FnMut(Topic, &[u8]) + Send + 'static,
) {
    let (gossip_net, sync_net) = (net.clone(), net.clone());
    let task = event_loop(
        events,
        async move |topic, data, id, source| {
            observe(topic, &data);
            gossip_net.report(id, source, Acceptance::Ignore)
        },
        async move |_, _, channel| {
            let refusal = SyncResponse::Error("not serving".into());
            sync_net.respond(channel, codec::encode(&refusal));
        },
    );
    tokio::spawn(timeout(LIFETIME, task));
}

// ---------------------------------------------------------------------------------------
// Scenario 1: the eclipsing relay that malleates transaction signatures.

/// What the relay has done so far.
#[derive(Default)]
pub struct RelayCounts {
    /// Gossip messages relayed (reported `Accept`).
    pub relayed: AtomicU64,
    /// Malleated proposal copies published before their original was relayed.
    pub malleated: AtomicU64,
    /// Sync requests forwarded to an honest node and answered with its response.
    pub proxied: AtomicU64,
}

/// A copy of the gossiped proposal `data` whose block has one byte of its first input
/// signature flipped (same proposal, same header), if the block has a transaction.
pub fn malleate(data: &[u8]) -> Option<Vec<u8>> {
    let mut message = ProposalMessage::decode(data).ok()?;
    let mut block = message.block().ok()?;
    let input = block.transactions.first_mut()?.inputs.first_mut()?;
    input.signature.0[7] ^= 0x01;
    message.block = codec::encode(&block);
    Some(codec::encode(&message))
}

/// Runs the eclipsing relay on `swarm`: every gossip message is relayed (`Accept`), except
/// that a proposal whose block carries transactions is first published as a copy with a
/// malleated input signature; sync requests are answered by forwarding them to one of
/// `sync_to` (never back to the asker).
pub fn spawn_relay(swarm: &Swarm, events: NetEvents, sync_to: Vec<PeerId>) -> Arc<RelayCounts> {
    let counts = Arc::new(RelayCounts::default());
    let (net, c) = (swarm.net.clone(), counts.clone());
    let (sync_net, sync_c) = (swarm.net.clone(), counts.clone());
    let task = event_loop(
        events,
        async move |topic, data, id, source| {
            if topic == Topic::Proposal {
                if let Some(copy) = malleate(&data) {
                    net.publish(Topic::Proposal, copy).await;
                    // Commands are handled in order: once this answers, the copy has been
                    // handed to gossipsub, ahead of the original's relay.
                    net.peers().await;
                    c.malleated.fetch_add(1, Ordering::Relaxed);
                }
            }
            net.report(id, source, Acceptance::Accept);
            c.relayed.fetch_add(1, Ordering::Relaxed);
        },
        async move |peer, request, channel| {
            let Some(&target) = sync_to.iter().find(|&&p| p != peer) else {
                return;
            };
            let net = sync_net.clone();
            let c = sync_c.clone();
            tokio::spawn(async move {
                let answer = match net.request(target, request).await {
                    Ok(bytes) => bytes,
                    Err(err) => codec::encode(&SyncResponse::Error(err.to_string())),
                };
                net.respond(channel, answer);
                c.proxied.fetch_add(1, Ordering::Relaxed);
            });
        },
    );
    tokio::spawn(timeout(LIFETIME, task));
    counts
}

// ---------------------------------------------------------------------------------------
// Scenario 2: junk for the next heights, signed by keys outside the validator set.

/// A message for `height` signed by a fresh key (so by no member of any set): the `i`th of
/// a mix of prepares, precommits and proposals over a few rounds.
pub fn junk(chain_id: &str, height: u64, i: u64) -> (Topic, Vec<u8>) {
    let key = Keypair::generate();
    let round = (i % 3) as u32;
    let hash = Some(Hash256::digest(&i.to_be_bytes()));
    let vote = |kind| VoteMessage {
        vote: Vote::sign(chain_id, &key, kind, height, round, hash),
        nonce: i,
    };
    match i % 3 {
        0 => (Topic::Prepare, codec::encode(&vote(VoteKind::Prepare))),
        1 => (Topic::Precommit, codec::encode(&vote(VoteKind::Precommit))),
        _ => {
            let body = garbage(256);
            let proposal =
                Proposal::sign(chain_id, &key, height, round, None, Hash256::digest(&body));
            let message = ProposalMessage {
                proposal,
                block: body,
            };
            (Topic::Proposal, codec::encode(&message))
        }
    }
}

/// Publishes `count` junk messages for the height `ahead` past the one in progress (as
/// `oracle` tells it over sync), at about 1,000 a second; returns how many it published.
pub async fn flood_junk(
    net: &NetHandle,
    chain_id: &str,
    oracle: PeerId,
    ahead: u64,
    count: u64,
) -> u64 {
    let mut pace = tokio::time::interval(PACE);
    let mut height = 0;
    let mut sent = 0;
    while sent < count {
        if sent % 50 == 0 {
            if let Some(tip) = tip_of(net, oracle).await {
                height = tip + 1 + ahead;
            }
        }
        pace.tick().await;
        for _ in 0..BURST {
            let (topic, data) = junk(chain_id, height, sent);
            net.publish(topic, data).await;
            sent += 1;
        }
    }
    sent
}

// ---------------------------------------------------------------------------------------
// Scenario 3: replays of real votes under fresh nonces.

/// The most recent votes seen on gossip, newest last.
pub type Captured = Arc<Mutex<VecDeque<Vote>>>;

/// Most votes kept by [`spawn_capture`].
const CAPTURE: usize = 64;

/// Records the votes gossiped to `swarm` (keeping the newest [`CAPTURE`]) without relaying
/// anything; sync requests are refused.
pub fn spawn_capture(swarm: &Swarm, events: NetEvents) -> Captured {
    let captured: Captured = Arc::default();
    let keep = captured.clone();
    spawn_drain_observing(&swarm.net, events, move |topic, data| {
        if !matches!(topic, Topic::Prepare | Topic::Precommit) {
            return;
        }
        if let Ok(m) = codec::decode::<VoteMessage>(data, GOSSIP_LIMITS.vote) {
            let mut votes = keep.lock().expect("capture lock");
            votes.push_back(m.vote);
            if votes.len() > CAPTURE {
                votes.pop_front();
            }
        }
    });
    captured
}

/// Publishes `count` copies of the most recently captured votes, each wrapped with a fresh
/// nonce (so gossipsub sees new bytes), at about 1,000 a second; returns how many it
/// published.
pub async fn replay_votes(net: &NetHandle, captured: &Captured, count: u64) -> u64 {
    let mut pace = tokio::time::interval(PACE);
    let mut sent = 0;
    while sent < count {
        pace.tick().await;
        let recent: Vec<Vote> = {
            let votes = captured.lock().expect("capture lock");
            votes.iter().rev().take(BURST as usize).cloned().collect()
        };
        if recent.is_empty() {
            continue;
        }
        for vote in recent {
            let topic = match vote.kind {
                VoteKind::Prepare => Topic::Prepare,
                VoteKind::Precommit => Topic::Precommit,
            };
            let message = VoteMessage {
                vote,
                nonce: rand::random(),
            };
            net.publish(topic, codec::encode(&message)).await;
            sent += 1;
        }
    }
    sent
}

// ---------------------------------------------------------------------------------------
// Scenario 4: messages at the size limits.

/// Which side of its topic's limit a message is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// At most the limit: the node's intake sees it.
    Under,
    /// Above the limit: refused before the node's intake.
    Over,
}

/// A message at the edge of a topic's size limit.
pub struct Sized {
    /// Its topic.
    pub topic: Topic,
    /// Which side of the limit.
    pub side: Side,
    /// What it is, for the figures.
    pub what: &'static str,
    /// The payload.
    pub data: Vec<u8>,
}

/// A proposal message for `height` signed by a fresh key, whose body is `body_len` bytes. Its
/// `valid_round` is not below its round: invalid at any height, on every node.
fn proposal_of_len(chain_id: &str, height: u64, body_len: usize) -> Vec<u8> {
    let body = garbage(body_len);
    let key = Keypair::generate();
    let proposal = Proposal::sign(chain_id, &key, height, 0, Some(0), Hash256::digest(&body));
    codec::encode(&ProposalMessage {
        proposal,
        block: body,
    })
}

/// A well-formed proposal message of exactly `len` bytes (the body is sized to fit).
fn proposal_exactly(chain_id: &str, height: u64, len: usize) -> Vec<u8> {
    let mut body_len = len.saturating_sub(300);
    for _ in 0..16 {
        let bytes = proposal_of_len(chain_id, height, body_len);
        if bytes.len() == len {
            return bytes;
        }
        body_len = (body_len + len).saturating_sub(bytes.len());
    }
    panic!("no proposal message of exactly {len} bytes");
}

/// The largest well-formed transaction the ledger's input and output bounds allow, with
/// made-up inputs and signatures: it decodes, and is refused by every node.
fn largest_transaction() -> Transaction {
    let key = Keypair::generate();
    Transaction {
        inputs: (0..timecoin_ledger::MAX_TX_INPUTS as u32)
            .map(|index| TxInput {
                prev: OutPoint {
                    txid: Hash256::digest(&index.to_be_bytes()),
                    index,
                },
                public_key: key.public(),
                signature: Signature([7; 64]),
            })
            .collect(),
        outputs: (0..timecoin_ledger::MAX_TX_OUTPUTS as u64)
            .map(|i| TxOutput {
                address: Address::of(&key.public()),
                amount: 1_000_000 + i,
            })
            .collect(),
        stake: None,
    }
}

/// For every topic: garbage at its limit and one byte over it, and well-formed messages that
/// every node refuses whatever its height, at the limit (or as large as the format allows: a
/// vote's and a transaction's encodings are bounded well below their topics' limits) and one
/// byte over it. Every message at the limit is one the intake must reject.
pub fn sized_messages(chain_id: &str, height: u64) -> Vec<Sized> {
    let limits = GOSSIP_LIMITS;
    let key = Keypair::generate();
    let vote = |kind| {
        codec::encode(&VoteMessage {
            vote: Vote::sign(chain_id, &key, kind, height, 0, Some(Hash256::ZERO)),
            nonce: rand::random(),
        })
    };
    let tx = codec::encode(&largest_transaction());
    let mut padded_tx = tx.clone();
    padded_tx.resize(limits.tx + 1, 0);
    let mut padded_vote = vote(VoteKind::Prepare);
    padded_vote.resize(limits.vote + 1, 0);
    let mut out = Vec::new();
    for topic in Topic::ALL {
        let limit = limits.of(topic);
        out.push(Sized {
            topic,
            side: Side::Under,
            what: "garbage at the limit",
            data: garbage(limit),
        });
        out.push(Sized {
            topic,
            side: Side::Over,
            what: "garbage one byte over",
            data: garbage(limit + 1),
        });
    }
    let sized = |topic, side, what, data| Sized {
        topic,
        side,
        what,
        data,
    };
    out.extend([
        sized(
            Topic::Proposal,
            Side::Under,
            "proposal with a valid round not below its round, at the limit",
            proposal_exactly(chain_id, height, limits.proposal),
        ),
        sized(
            Topic::Proposal,
            Side::Over,
            "proposal one byte over",
            proposal_exactly(chain_id, height, limits.proposal + 1),
        ),
        sized(
            Topic::Prepare,
            Side::Under,
            "precommit on the prepare topic",
            vote(VoteKind::Precommit),
        ),
        sized(
            Topic::Precommit,
            Side::Under,
            "prepare on the precommit topic",
            vote(VoteKind::Prepare),
        ),
        sized(
            Topic::Prepare,
            Side::Over,
            "prepare padded one byte over",
            padded_vote,
        ),
        sized(
            Topic::Tx,
            Side::Under,
            "transaction of 256 made-up inputs and 256 outputs",
            tx,
        ),
        sized(
            Topic::Tx,
            Side::Over,
            "transaction padded one byte over",
            padded_tx,
        ),
    ]);
    out
}

// ---------------------------------------------------------------------------------------
// Scenario 6: the lying sync peer.

/// How a [`spawn_liar`] answers a request for blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// `SyncResponse::Error`.
    Refuse,
    /// An empty list of blocks, although it claimed a higher tip.
    Empty,
    /// No answer at all: the request times out.
    Silence,
    /// Bytes that decode as no response.
    Garbage,
    /// The requested heights, with blocks whose certificates carry made-up signatures.
    Forged,
}

/// The blocks requests a liar received, by peer, with when and how it answered.
pub type LiarLog = Arc<Mutex<HashMap<PeerId, Vec<(Instant, Lie)>>>>;

/// A made-up block of `height` with a certificate of made-up signatures: well-formed, and
/// invalid on every node.
fn forged(chain_id: &str, height: u64) -> SyncedBlock {
    let signer = Keypair::generate();
    let forger = GenesisValidator::new("forger", signer.public(), MIN_COLLATERAL);
    let genesis = Genesis {
        min_fee_per_byte: 1,
        ..Genesis::new(chain_id, 0, 1000, vec![forger], Vec::new())
    };
    let mut block: Block = genesis.genesis_block();
    block.header.height = height;
    block.header.prev_hash = Hash256::digest(&height.to_be_bytes());
    let certificate = Certificate {
        height,
        round: 0,
        block_hash: block.hash(),
        signatures: vec![CommitSignature {
            validator: signer.public(),
            signature: signer.sign(&block.hash()),
        }],
    };
    SyncedBlock { block, certificate }
}

/// Runs a lying sync peer on `swarm`: it claims a tip `lead` blocks past the true one (as
/// `oracle` tells it) and answers the blocks requests of each peer with `lies` in turn (the
/// last one repeating). Silent requests are held, never answered, so they time out. Gossip is
/// dropped without penalty.
pub fn spawn_liar(
    swarm: &Swarm,
    events: NetEvents,
    chain_id: String,
    oracle: PeerId,
    lead: u64,
    lies: Vec<Lie>,
) -> LiarLog {
    let log: LiarLog = Arc::default();
    let gossip_net = swarm.net.clone();
    let net = swarm.net.clone();
    let record = log.clone();
    // The silent answers, held (never answered) for as long as the liar lives.
    let mut held = Vec::new();
    let task = event_loop(
        events,
        async move |_, _, id, source| gossip_net.report(id, source, Acceptance::Ignore),
        async move |peer, request, channel| {
            let (from, count) = match codec::decode(&request, 256) {
                Ok(SyncRequest::Blocks { from, count }) => (from, count),
                _ => {
                    let known = timeout(Duration::from_secs(1), tip_of(&net, oracle)).await;
                    let tip = known.ok().flatten().unwrap_or(0) + lead;
                    let status = SyncResponse::Status {
                        tip,
                        tip_hash: Hash256::digest(&tip.to_be_bytes()),
                    };
                    net.respond(channel, codec::encode(&status));
                    return;
                }
            };
            let lie = {
                let mut log = record.lock().expect("liar log");
                let seen = log.entry(peer).or_default();
                let lie = lies[seen.len().min(lies.len() - 1)];
                seen.push((Instant::now(), lie));
                lie
            };
            let answer = match lie {
                Lie::Refuse => codec::encode(&SyncResponse::Error("try later".into())),
                Lie::Empty => codec::encode(&SyncResponse::Blocks(Vec::new())),
                Lie::Garbage => garbage(4096),
                Lie::Forged => {
                    let blocks = (from..from + u64::from(count.clamp(1, 4)))
                        .map(|h| forged(&chain_id, h))
                        .collect();
                    codec::encode(&SyncResponse::Blocks(blocks))
                }
                Lie::Silence => {
                    held.push(channel);
                    return;
                }
            };
            net.respond(channel, answer);
        },
    );
    tokio::spawn(timeout(LIFETIME, task));
    log
}

// ---------------------------------------------------------------------------------------
// Scenario 7: the Byzantine proposer.

/// A chain followed over the sync protocol into a store of the adversary's own.
pub struct Follower {
    /// The store (in a temporary directory).
    pub store: Arc<Store>,
    /// The chain's genesis.
    pub genesis: Genesis,
    _dir: tempfile::TempDir,
}

impl Follower {
    /// An empty store at genesis.
    pub fn new(genesis: Genesis) -> Follower {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&dir.path().join("adversary.redb")).expect("store");
        store.init_genesis(&genesis).expect("genesis");
        Follower {
            store: Arc::new(store),
            genesis,
            _dir: dir,
        }
    }

    /// The store's tip height.
    pub fn tip(&self) -> u64 {
        self.store.tip().expect("tip").0
    }

    /// Fetches and applies (certificates checked) the blocks `peer` has beyond our tip;
    /// returns our new tip.
    pub async fn follow(&self, net: &NetHandle, peer: PeerId) -> u64 {
        let tip = self.tip();
        let request = SyncRequest::Blocks {
            from: tip + 1,
            count: MAX_SYNC_BATCH,
        };
        let Ok(bytes) = net.request(peer, codec::encode(&request)).await else {
            return tip;
        };
        let Ok(SyncResponse::Blocks(blocks)) = codec::decode(&bytes, MAX_SYNC_RESPONSE_BYTES)
        else {
            return tip;
        };
        for item in blocks {
            if timed::sync::check_and_apply(&self.store, &self.genesis, &item).is_err() {
                break;
            }
        }
        self.tip()
    }
}

/// What the Byzantine proposer did.
#[derive(Default)]
pub struct Proposed {
    /// `(height, hash of the valid block)` of every height it proposed for.
    pub heights: Mutex<Vec<(u64, Hash256)>>,
}

/// A copy of `block` with the same header and a corrupted body (one reward paid one unit
/// more): its hash is the signed one, its body matches none of the header's roots.
pub fn corrupt(block: &Block) -> Block {
    let mut bad = block.clone();
    if let Some(reward) = bad.rewards.first_mut() {
        reward.amount += 1;
    }
    bad
}

/// Runs the Byzantine proposer holding validator `key`: it follows the chain from `oracle`,
/// and whenever `key` proposes round 0 of the next height it builds a valid block, signs the
/// proposal, and publishes the valid body through `one` and a corrupted body under the same
/// signed hash through `other` (swapping the two every time). Stops after `max_proposals`.
pub fn spawn_byzantine_proposer(
    follower: Follower,
    key: Keypair,
    one: NetHandle,
    other: NetHandle,
    oracle: PeerId,
    max_proposals: usize,
) -> Arc<Proposed> {
    let proposed = Arc::new(Proposed::default());
    let record = proposed.clone();
    tokio::spawn(timeout(LIFETIME, async move {
        let chain_id = follower.genesis.chain_id.clone();
        let mut last = 0;
        for _ in 0..MAX_EVENTS {
            if record.heights.lock().expect("proposed").len() >= max_proposals {
                break;
            }
            let tip = follower.follow(&one, oracle).await;
            let height = tip + 1;
            let set = follower.store.validator_set(height).expect("validator set");
            if height > last && set.proposer(height, 0).public_key == key.public() {
                last = height;
                let block = follower
                    .store
                    .build_block(
                        &follower.genesis,
                        0,
                        key.public(),
                        timed::testnet::now_ms(),
                        Vec::new(),
                    )
                    .expect("block");
                let hash = block.hash();
                let proposal = Proposal::sign(&chain_id, &key, height, 0, None, hash);
                let good = codec::encode(&ProposalMessage::new(proposal.clone(), &block));
                let bad = codec::encode(&ProposalMessage::new(proposal, &corrupt(&block)));
                let turn = {
                    let mut heights = record.heights.lock().expect("proposed");
                    heights.push((height, hash));
                    heights.len()
                };
                let (valid_via, corrupt_via) = if turn % 2 == 1 {
                    (&one, &other)
                } else {
                    (&other, &one)
                };
                corrupt_via.publish(Topic::Proposal, bad).await;
                valid_via.publish(Topic::Proposal, good).await;
            }
            // The poll interval of the chain follower.
            sleep(Duration::from_millis(25)).await;
        }
    }));
    proposed
}
