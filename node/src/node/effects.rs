//! Carrying out what the consensus engine asks for: its [`Output`]s become signed-state
//! writes, gossip, timers, block building and validation on blocking threads, and finalized
//! blocks in the ledger.
//!
//! Kept apart from the intake so that everything with an effect outside the engine is in one
//! place, in the order the engine asked for it.

use super::{Fatal, Node};
use crate::metrics::PhaseLabels;
use crate::rpc::evidence_json;
use crate::shared::Internal;
use crate::wire::{ConsensusRecord, ProposalMessage, VoteMessage};
use crate::NODE_LOG_TARGET;
use std::collections::VecDeque;
use std::time::Duration;
use timecoin_consensus::{Evidence, Input, Output, SignerState, Step, Verdict};
use timecoin_ledger::Block;
use timecoin_net::Topic;
use timecoin_types::{codec, Certificate, Hash256, VoteKind};
use tracing::{error, info, warn};

impl Node {
    /// Feeds one input to the engine, runs everything it asks for, and returns its verdict
    /// on the input.
    pub(super) async fn feed(&mut self, input: Input<Block>) -> Result<Verdict, Fatal> {
        let handled = self.engine.handle(input);
        self.process(handled.outputs).await?;
        Ok(handled.verdict)
    }

    /// Runs the engine's outputs in order; stops at the first [`Fatal`] one, so that nothing
    /// the engine asked for after it leaves the node.
    pub(super) async fn process(&mut self, outputs: Vec<Output<Block>>) -> Result<(), Fatal> {
        let mut queue: VecDeque<Output<Block>> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                Output::PersistSigner(state) => self.persist_signer(state).await?,
                Output::BroadcastProposal { proposal, block } => {
                    let message = ProposalMessage::new(proposal, &block);
                    self.remember_proposal(&message);
                    let bytes = codec::encode(&message);
                    self.shared.net.publish(Topic::Proposal, bytes).await;
                }
                Output::BroadcastVote(vote) => {
                    self.shared
                        .observed
                        .vote(vote.validator, vote.kind, vote.height, vote.round);
                    let topic = match vote.kind {
                        VoteKind::Prepare => Topic::Prepare,
                        VoteKind::Precommit => Topic::Precommit,
                    };
                    self.vote_nonce = self.vote_nonce.wrapping_add(1);
                    let message = VoteMessage {
                        vote,
                        nonce: self.vote_nonce,
                    };
                    self.shared
                        .net
                        .publish(topic, codec::encode(&message))
                        .await;
                }
                Output::ScheduleTimeout { timeout, after_ms } => {
                    self.timers.insert(timeout, Duration::from_millis(after_ms));
                }
                Output::ValidateBlock {
                    height,
                    block_hash,
                    block,
                } => self.validate_in_background(height, block_hash, block),
                Output::BuildBlock { height, round } => self.build_in_background(height, round),
                Output::Decide {
                    height,
                    round,
                    block_hash,
                    block,
                    certificate,
                } => {
                    self.commit(height, round, block_hash, block, certificate)
                        .await?
                }
                Output::Evidence(evidence) => self.record_evidence(evidence).await,
            }
        }
        self.publish_status();
        Ok(())
    }

    /// The signer state must be durable before any vote it covers leaves the node: a crash
    /// after sending but before persisting could let a restarted validator sign again.
    async fn persist_signer(&self, state: SignerState) -> Result<(), Fatal> {
        let store = self.shared.store.clone();
        let kept = [state.locked, state.valid];
        let proposals = kept
            .iter()
            .flatten()
            .filter_map(|(_, hash)| self.proposals.get(&(state.height, *hash)).cloned())
            .collect();
        let bytes = codec::encode(&ConsensusRecord {
            signer: state,
            proposals,
        });
        match tokio::task::spawn_blocking(move || store.save_signer_state(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            other => {
                // Without a durable record we must not sign on: stop rather than risk a
                // double sign after a restart.
                error!(target: NODE_LOG_TARGET, ?other, "cannot persist the signer state; stopping");
                Err(Fatal::SignerState(format!("{other:?}")))
            }
        }
    }

    fn validate_in_background(&self, height: u64, block_hash: Hash256, block: Block) {
        let shared = self.shared.clone();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let now_ms = crate::testnet::now_ms();
            let valid = match shared.store.validate_block(&block, &shared.genesis, now_ms) {
                Ok(()) => true,
                Err(err) => {
                    warn!(target: NODE_LOG_TARGET, height, hash = %block_hash, %err, "proposed block is invalid");
                    false
                }
            };
            let _ = tx.send(Internal::Validated {
                height,
                block_hash,
                valid,
            });
        });
    }

    fn build_in_background(&self, height: u64, round: u32) {
        let shared = self.shared.clone();
        let tx = self.internal_tx.clone();
        let Some(proposer) = self.validator_key else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            let candidates = shared.mempool.lock().expect("mempool lock").select(
                timecoin_ledger::MAX_BLOCK_TRANSACTIONS,
                timecoin_ledger::MAX_BLOCK_BYTES - 64 * 1024,
            );
            let time_ms = crate::testnet::now_ms();
            match shared
                .store
                .build_block(&shared.genesis, round, proposer, time_ms, candidates)
            {
                Ok(block) if block.header.height == height => {
                    let _ = tx.send(Internal::Built {
                        height,
                        round,
                        block: Box::new(block),
                    });
                }
                Ok(block) => warn!(
                    target: NODE_LOG_TARGET,
                    height,
                    built = block.header.height,
                    "ledger moved on while building; dropping the block"
                ),
                Err(err) => error!(target: NODE_LOG_TARGET, height, %err, "cannot build a block"),
            }
        });
    }

    async fn commit(
        &mut self,
        height: u64,
        round: u32,
        block_hash: Hash256,
        block: Option<Block>,
        certificate: Certificate,
    ) -> Result<(), Fatal> {
        let Some(block) = block else {
            info!(target: NODE_LOG_TARGET, height, hash = %block_hash, "decided a block we never received; fetching it");
            self.sync.trigger();
            return Ok(());
        };
        let shared = self.shared.clone();
        let applied = block.clone();
        let result = tokio::task::spawn_blocking(move || {
            let (tip, tip_hash) = shared.store.tip()?;
            if tip >= height {
                // Catch-up sync applied it first; it must be the same block.
                let ours = shared.store.block_hash(height)?;
                return Ok::<_, timecoin_ledger::StoreError>(ours == Some(block_hash) || {
                    error!(target: NODE_LOG_TARGET, height, decided = %block_hash, stored = ?ours, tip = %tip_hash, "decided a block other than the stored one");
                    false
                });
            }
            shared
                .store
                .apply_block(&applied, &certificate, &shared.genesis)?;
            shared.snapshot_if_due(height);
            Ok(true)
        })
        .await;
        match result {
            Ok(Ok(true)) => self.after_commit(&block, round),
            Ok(Ok(false)) => {}
            // The decided block does not apply here although two thirds finalized it: this
            // node's copy or state disagrees with theirs. Nothing a peer sent may stop the
            // node; fetch the block with its certificate from peers instead.
            Ok(Err(err)) if !is_disk_failure(&err) => {
                error!(target: NODE_LOG_TARGET, height, hash = %block_hash, %err, "the decided block does not apply; fetching it from peers");
                self.sync.trigger();
            }
            other => {
                error!(target: NODE_LOG_TARGET, height, ?other, "cannot store the finalized block; stopping");
                return Err(Fatal::FinalizedBlock {
                    height,
                    reason: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    fn after_commit(&mut self, block: &Block, round: u32) {
        let height = block.header.height;
        let now = crate::testnet::now_ms();
        self.shared
            .finalized_at
            .lock()
            .expect("finalized_at lock")
            .record(height, now);
        let latency = self.height_started.elapsed();
        self.shared.observed.block(crate::dashboard::BlockSummary {
            height,
            round,
            txs: block.transactions.len(),
            latency_ms: latency.as_millis() as u64,
            finalized_at_ms: now,
        });
        let m = &self.shared.metrics;
        m.height.set(height as i64);
        m.finalization.observe(latency.as_secs_f64());
        if let Some(seen) = self.proposal_seen {
            m.phases
                .get_or_create(&PhaseLabels { phase: "vote" })
                .observe(seen.elapsed().as_secs_f64());
        }
        self.shared.clean_mempool(std::slice::from_ref(block));
        self.shared.announce_block(block);
        let reward: u64 = block.rewards.iter().map(|o| o.amount).sum();
        info!(
            target: NODE_LOG_TARGET,
            height,
            hash = %block.hash(),
            round,
            txs = block.transactions.len(),
            reward = %timecoin_types::format_amount(reward),
            latency_ms = latency.as_millis() as u64,
            "finalized block"
        );
        self.schedule_height(height + 1);
    }

    async fn record_evidence(&self, evidence: Evidence) {
        let height = match &evidence {
            Evidence::DoubleVote { first, .. } => first.height,
            Evidence::DoubleProposal { first, .. } => first.height,
        };
        let shown = evidence_json(height, &evidence);
        warn!(target: NODE_LOG_TARGET, evidence = %shown, "equivocation");
        self.shared.observed.evidence(shown);
        self.shared.metrics.equivocations.inc();
        let store = self.shared.store.clone();
        let bytes = codec::encode(&evidence);
        if let Ok(Err(err)) =
            tokio::task::spawn_blocking(move || store.put_evidence(height, &bytes)).await
        {
            error!(target: NODE_LOG_TARGET, %err, "cannot store evidence");
        }
    }

    /// Shows RPC callers and `/metrics` where consensus is now.
    fn publish_status(&self) {
        let step = match self.engine.step() {
            Step::Propose => "propose",
            Step::Prepare => "prepare",
            Step::Precommit => "precommit",
        };
        self.shared
            .metrics
            .round
            .set(i64::from(self.engine.round()));
        self.status.send_modify(|s| {
            s.height = self.engine.height();
            s.round = self.engine.round();
            s.step = step;
        });
    }
}

/// Whether the store failed locally (I/O, corruption) rather than refusing the block: only
/// then may the node stop.
fn is_disk_failure(err: &timecoin_ledger::StoreError) -> bool {
    matches!(
        err,
        timecoin_ledger::StoreError::Database(_) | timecoin_ledger::StoreError::Corrupt(_)
    )
}
