//! The node's Prometheus metrics, in one registry shared with libp2p's.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::sync::Mutex;
use timecoin_ledger::Store;

/// Labels of the message counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// proposal, prepare, precommit or tx.
    pub kind: &'static str,
    /// accepted, ignored or rejected.
    pub verdict: &'static str,
}

/// Labels of the phase-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `propose`: height start to the block's proposal; `vote`: proposal to decision.
    pub phase: &'static str,
}

/// Everything the node measures.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Finalized tip height.
    pub height: Gauge,
    /// Current consensus round.
    pub round: Gauge,
    /// Height start to finalization, seconds.
    pub finalization: Histogram,
    /// Phase durations, seconds.
    pub phases: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    /// Gossip messages by kind and verdict.
    pub messages: Family<MessageLabels, Counter>,
    /// Pending transactions.
    pub mempool_size: Gauge,
    /// Connected peers.
    pub peers: Gauge,
    /// Blocks applied through catch-up sync.
    pub synced_blocks: Counter,
    /// Equivocations seen.
    pub equivocations: Counter,
    /// Size of the redb database file, bytes.
    pub db_bytes: Gauge,
    /// The lowest height whose block body the store keeps (0: none pruned).
    pub pruned_below_height: Gauge,
}

fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// Registers `metric` as `name` with `help` and returns it; the registry keeps a clone, which
/// shares the value.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Registers the node's metrics in `registry` (which libp2p's metrics share).
    ///
    /// Every phase and every (kind, verdict) of the gossip counters is exported from the
    /// start, at zero, so that dashboards and alerts find each series before its first event.
    pub fn new(mut registry: Registry) -> Metrics {
        let r = &mut registry;
        let metrics = Metrics {
            height: registered(r, "timed_height", "Finalized tip height", Gauge::default()),
            round: registered(
                r,
                "timed_round",
                "Current consensus round",
                Gauge::default(),
            ),
            finalization: registered(
                r,
                "timed_finalization_seconds",
                "Time from a height's start to its finalization",
                seconds_histogram(),
            ),
            phases: registered(
                r,
                "timed_phase_seconds",
                "Duration of consensus phases",
                Family::new_with_constructor(seconds_histogram as fn() -> Histogram),
            ),
            messages: registered(
                r,
                "timed_gossip_messages",
                "Gossip messages by kind and verdict",
                Family::default(),
            ),
            mempool_size: registered(
                r,
                "timed_mempool_transactions",
                "Pending transactions",
                Gauge::default(),
            ),
            peers: registered(r, "timed_peers", "Connected peers", Gauge::default()),
            synced_blocks: registered(
                r,
                "timed_synced_blocks",
                "Blocks applied by catch-up sync",
                Counter::default(),
            ),
            equivocations: registered(
                r,
                "timed_equivocations",
                "Equivocations seen",
                Counter::default(),
            ),
            db_bytes: registered(
                r,
                "timed_db_bytes",
                "Size of the database file in bytes",
                Gauge::default(),
            ),
            pruned_below_height: registered(
                r,
                "timed_pruned_below_height",
                "Lowest height whose block body is kept ([storage] retain_blocks); 0 when none is pruned",
                Gauge::default(),
            ),
            registry: Mutex::new(registry),
        };
        for phase in ["propose", "vote"] {
            let _ = metrics.phases.get_or_create(&PhaseLabels { phase });
        }
        for kind in ["proposal", "prepare", "precommit", "tx"] {
            for verdict in ["accepted", "ignored", "rejected"] {
                let _ = metrics
                    .messages
                    .get_or_create(&MessageLabels { kind, verdict });
            }
        }
        metrics
    }

    /// The whole registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics lock");
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }

    /// Reads the database file's size and pruning height into their gauges (at each scrape:
    /// both change with every block, and reading them costs a `stat` and one lookup).
    pub fn refresh_store(&self, store: &Store) {
        if let Ok(bytes) = store.file_bytes() {
            self.db_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        if let Ok(height) = store.pruned_below() {
            self.pruned_below_height
                .set(i64::try_from(height).unwrap_or(i64::MAX));
        }
    }

    /// Counts one gossip message.
    pub fn message(&self, kind: &'static str, verdict: &'static str) {
        self.messages
            .get_or_create(&MessageLabels { kind, verdict })
            .inc();
    }
}
