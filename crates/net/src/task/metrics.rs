//! The crate's own metrics, registered beside libp2p's.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::{Metric, Registry},
};

/// The crate's own metrics, next to libp2p's.
pub(super) struct NetMetrics {
    pub(super) connected_peers: Gauge,
    pub(super) pending_publications: Gauge,
    pub(super) dropped_events: Counter,
    pub(super) dropped_publications: Counter,
    pub(super) wrong_chain_peers: Counter,
    pub(super) penalized_peers: Counter,
    pub(super) refused_connections: Counter,
    pub(super) persistent_peer_dials: Counter,
    pub(super) bootstrap_peer_dials: Counter,
    pub(super) saved_peers: Gauge,
}

impl NetMetrics {
    pub(super) fn new(registry: &mut Registry) -> Self {
        Self {
            connected_peers: registered(
                registry,
                "connected_peers",
                "Peers with at least one established connection",
                Gauge::default(),
            ),
            pending_publications: registered(
                registry,
                "pending_publications",
                "Gossip messages waiting for a subscribed peer",
                Gauge::default(),
            ),
            dropped_events: registered(
                registry,
                "dropped_events",
                "Events dropped because the node did not keep up",
                Counter::default(),
            ),
            dropped_publications: registered(
                registry,
                "dropped_publications",
                "Gossip messages dropped before reaching any peer",
                Counter::default(),
            ),
            wrong_chain_peers: registered(
                registry,
                "wrong_chain_peers",
                "Peers disconnected for announcing another chain",
                Counter::default(),
            ),
            penalized_peers: registered(
                registry,
                "penalized_peers",
                "Peers disconnected and banned on the node's request",
                Counter::default(),
            ),
            refused_connections: registered(
                registry,
                "refused_connections",
                "Inbound connections refused by the connection limits",
                Counter::default(),
            ),
            persistent_peer_dials: registered(
                registry,
                "persistent_peer_dials",
                "Dials of persistent peers that were not connected",
                Counter::default(),
            ),
            bootstrap_peer_dials: registered(
                registry,
                "bootstrap_peer_dials",
                "Dials of bootstrap peers named by id that were not connected",
                Counter::default(),
            ),
            saved_peers: registered(
                registry,
                "saved_peers",
                "Peers in the peer table saved across restarts",
                Gauge::default(),
            ),
        }
    }
}

/// Registers `metric` as `name` with `help` and returns it; the registry keeps a clone, which
/// shares the value.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}
