//! The composed network behaviour and the tuning of each protocol.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity::Keypair, kad, ping,
    request_response, swarm::NetworkBehaviour, StreamProtocol,
};

use crate::codec::SyncCodec;
use crate::gate::ConnectionGate;
use crate::{MessageLimits, NetConfig, NetError, Topic};

/// How often each connection is pinged.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A ping unanswered this long fails (libp2p reports the second failure in a row, which
/// closes the connection): several round trips of a wide-area link, with room for a busy
/// peer.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Gossipsub heartbeat: short, because devnet blocks take a second or less and mesh repairs and
/// IHAVE gossip happen on heartbeats.
const HEARTBEAT: Duration = Duration::from_millis(300);
/// Heartbeats a received message stays in the message cache, i.e. how long the node may take to
/// validate it before a late `Accept` can no longer forward it (~6 s).
const HISTORY_LENGTH: usize = 20;
/// Kademlia self-lookup and bucket refresh period; the random walk that finds peers we were not
/// told about.
const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30);
/// How long a sync request may take, including a large response on a slow link.
const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Parallel sync streams per connection; catch-up asks for a few ranges at a time, not hundreds.
const SYNC_MAX_CONCURRENT_STREAMS: usize = 32;
/// Peers scoring below this receive none of our own messages (see the thresholds below).
pub(crate) const PUBLISH_THRESHOLD: f64 = -50.0;
/// Connections per peer: two, so that simultaneous dials from both sides are not both refused.
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Room for the protobuf message around a payload (topic name, field tags and lengths) when
/// sizing an RPC frame. Topic names are at most a few hundred bytes.
const MESSAGE_OVERHEAD: usize = 512;
/// Room in one RPC frame beyond its largest message, for control messages (IHAVE, IWANT,
/// GRAFT, PRUNE) sent alongside.
const FRAME_OVERHEAD: usize = 64 * 1024;

/// The protocol names and version strings derived from the chain id.
#[derive(Clone, Debug)]
pub(crate) struct Protocols {
    pub(crate) identify_version: String,
    pub(crate) kad: StreamProtocol,
    pub(crate) sync: StreamProtocol,
}

impl Protocols {
    pub(crate) fn new(chain_id: &str) -> Result<Self, NetError> {
        if chain_id.is_empty()
            || !chain_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(NetError::Config(format!(
                "chain id {chain_id:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"
            )));
        }
        let protocol = |name: String| {
            StreamProtocol::try_from_owned(name)
                .map_err(|e| NetError::Config(format!("protocol name: {e}")))
        };
        Ok(Self {
            identify_version: format!("/timecoin/{chain_id}/1.0.0"),
            kad: protocol(format!("/timecoin/{chain_id}/kad/1.0.0"))?,
            sync: protocol(format!("/timecoin/{chain_id}/sync/1"))?,
        })
    }
}

/// Everything the swarm runs, polled in field order.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) gate: ConnectionGate,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    pub(crate) ping: ping::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(
        key: &Keypair,
        config: &NetConfig,
        protocols: &Protocols,
        hide_listen_addrs: bool,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Self, NetError> {
        let local_peer_id = key.public().to_peer_id();

        // Established connections are bounded by the gate, which knows the reserved peers.
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(config.max_peers.max(8)))
            .with_max_pending_outgoing(Some(config.max_peers.max(8)));

        let mut gossipsub = gossipsub::Behaviour::new(
            // Every payload is already signed by a validator or a coin owner, and message ids
            // are content hashes: a libp2p signature per message would only cost a signature
            // check per received copy (most of a 16-validator node's CPU) and ~100 bytes.
            gossipsub::MessageAuthenticity::Anonymous,
            gossipsub_config(&config.chain_id, config.max_message_bytes)?,
        )
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))?
        .with_metrics(
            registry.sub_registry_with_prefix("gossipsub_router"),
            gossipsub::MetricsConfig::default(),
        );
        let topics: HashMap<_, _> = Topic::ALL
            .iter()
            .map(|t| (topic_hash(*t, &config.chain_id), topic_score_params()))
            .collect();
        gossipsub
            .with_peer_score(peer_score_params(topics), peer_score_thresholds())
            .map_err(|e| NetError::Config(format!("gossipsub scoring: {e}")))?;

        let mut kad_config = kad::Config::new(protocols.kad.clone());
        kad_config.set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL));
        let mut kad = kad::Behaviour::with_config(
            local_peer_id,
            kad::store::MemoryStore::new(local_peer_id),
            kad_config,
        );
        // Without a confirmed external address Kademlia would stay a client and never be added
        // to other routing tables; validators are always reachable, so force server mode.
        kad.set_mode(Some(kad::Mode::Server));

        let identify = identify::Behaviour::new(
            identify::Config::new(protocols.identify_version.clone(), key.public())
                .with_agent_version(format!("timed/{}", env!("CARGO_PKG_VERSION")))
                .with_push_listen_addr_updates(true)
                // With external addresses configured, identify announces those alone; the
                // listen addresses (often private, or a wildcard's interfaces) stay local.
                .with_hide_listen_addrs(hide_listen_addrs),
        );

        let sync = request_response::Behaviour::with_codec(
            SyncCodec::new(config.max_sync_response_bytes),
            [(
                protocols.sync.clone(),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(SYNC_REQUEST_TIMEOUT)
                .with_max_concurrent_streams(SYNC_MAX_CONCURRENT_STREAMS),
        );

        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            gate: ConnectionGate::new(
                config.max_peers,
                config.max_inbound,
                config.max_inbound_per_ip,
            ),
            blocked: allow_block_list::Behaviour::default(),
            gossipsub,
            kad,
            identify,
            sync,
            // Pings keep bytes in flight on every connection, so that on a dead link (a
            // partition, a vanished host) sent data goes unacknowledged and the transport's
            // bound fails the connection within seconds (see `transport`); the peer is then
            // redialled and found again soon after the network heals.
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
        })
    }
}

/// The gossipsub topic hash of `topic` on `chain_id`.
pub(crate) fn topic_hash(topic: Topic, chain_id: &str) -> gossipsub::TopicHash {
    gossipsub::IdentTopic::new(topic.name(chain_id)).hash()
}

/// The message id is the BLAKE3 hash of the payload: the same vote or block relayed by several
/// peers, or published twice, is one message.
fn content_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
}

/// The length of the protobuf message gossipsub checks against a topic's bound, for a payload
/// of `payload` bytes on the topic named `topic`: the `data` and `topic` fields, each a tag, a
/// varint length and the bytes. Nothing else belongs in it: in anonymous validation mode a
/// message with `from`, `seqno` or `signature` is invalid anyway.
fn encoded_message_len(payload: usize, topic: &str) -> usize {
    let field = |len: usize| 1 + varint_len(len) + len;
    field(payload) + field(topic.len())
}

/// Bytes of `n` as a protobuf varint.
fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

/// Each topic has its own size limit (a vote is a few hundred bytes, a proposal megabytes), so
/// that a peer cannot make the node buffer and hash megabytes per vote. The bound gossipsub
/// checks is the encoded message of a payload of exactly the limit, so that a payload one byte
/// over is refused by the codec before it reaches the node, and counts against its forwarder.
fn gossipsub_config(chain_id: &str, limits: MessageLimits) -> Result<gossipsub::Config, NetError> {
    let mut builder = gossipsub::ConfigBuilder::default();
    for topic in Topic::ALL {
        builder.max_transmit_size_for_topic(
            encoded_message_len(limits.of(topic), &topic.name(chain_id)),
            topic_hash(topic, chain_id),
        );
    }
    builder
        .heartbeat_interval(HEARTBEAT)
        .heartbeat_initial_delay(HEARTBEAT)
        .history_length(HISTORY_LENGTH)
        .history_gossip(3)
        // A mesh of 4..12 suits networks of 3 to 20 validators: small networks mesh everyone,
        // larger ones keep redundancy without sending every message to everyone.
        .mesh_n(6)
        .mesh_n_low(4)
        .mesh_n_high(12)
        .mesh_outbound_min(2)
        .gossip_lazy(6)
        .max_transmit_size(limits.largest() + MESSAGE_OVERHEAD + FRAME_OVERHEAD)
        .validate_messages()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(content_id)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| NetError::Config(format!("gossipsub: {e}")))
}

/// Per-topic scoring: small rewards for time in the mesh and first deliveries, a steep
/// (quadratic) penalty for rejected messages. Mesh-delivery-rate penalties stay off because a
/// quiet devnet topic (no transactions) would otherwise punish honest peers.
fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        // One rejected message costs 10, two 40, three 90: below the graylist threshold on the
        // third or fourth, and the count halves in about 20 s.
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.97,
        ..Default::default()
    }
}

fn peer_score_params(
    topics: HashMap<gossipsub::TopicHash, gossipsub::TopicScoreParams>,
) -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        topics,
        // Good behaviour cannot buy more than two rejected messages' worth of credit.
        topic_score_cap: 20.0,
        // Local and docker testnets put every validator behind one IP; colocation is normal here.
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    }
}

fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -20.0,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_follow_the_design() {
        let p = Protocols::new("devnet-1").unwrap();
        assert_eq!(p.identify_version, "/timecoin/devnet-1/1.0.0");
        assert_eq!(p.kad.as_ref(), "/timecoin/devnet-1/kad/1.0.0");
        assert_eq!(p.sync.as_ref(), "/timecoin/devnet-1/sync/1");
        assert_eq!(
            Topic::Precommit.name("devnet-1"),
            "/timecoin/devnet-1/precommit/1"
        );
        assert!(Protocols::new("").is_err());
        assert!(Protocols::new("a/b").is_err());
    }

    #[test]
    fn scoring_parameters_are_valid() {
        topic_score_params().validate().unwrap();
        peer_score_params(HashMap::new()).validate().unwrap();
        peer_score_thresholds().validate().unwrap();
        let limits = MessageLimits {
            proposal: 1 << 20,
            vote: 512,
            tx: 1 << 16,
        };
        let config = gossipsub_config("devnet-1", limits).unwrap();
        // 512 bytes of data (tag, 2-byte length) and the 28-byte topic name (tag, length).
        assert_eq!(
            config.max_transmit_size_for_topic(&topic_hash(Topic::Prepare, "devnet-1")),
            (1 + 2 + 512) + (1 + 1 + 28)
        );
    }

    #[test]
    fn the_topic_bound_is_the_encoded_message_of_a_payload_at_the_limit() {
        // Varint lengths change at 2^7, 2^14, 2^21...
        for (n, bytes) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (4 << 20, 4),
        ] {
            assert_eq!(varint_len(n), bytes, "varint of {n}");
        }
        // A 29-byte topic: tag, 1-byte length, name; the payload: tag, length, bytes.
        let topic = Topic::Proposal.name("devnet-1");
        assert_eq!(topic.len(), 29);
        assert_eq!(encoded_message_len(127, &topic), (1 + 1 + 127) + 31);
        assert_eq!(encoded_message_len(128, &topic), (1 + 2 + 128) + 31);
        assert_eq!(
            encoded_message_len(4 << 20, &topic),
            (1 + 4 + (4 << 20)) + 31
        );
    }
}
