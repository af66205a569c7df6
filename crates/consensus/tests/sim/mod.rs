//! A deterministic network simulator that drives the real [`Engine`].
//!
//! Everything is derived from one seed: validator weights and roles, message latency,
//! drops, duplicates, partitions, crashes and what Byzantine validators do. Time is
//! simulated (milliseconds on an event queue), so a run takes as long as its computation
//! and replays bit for bit. After every event the invariants are checked: no two honest
//! validators decide different blocks at one height, every certificate verifies, no
//! honest validator is ever caught equivocating, no honest message is rejected, no
//! invalid block is decided; and after the last fault heals, every honest validator must
//! decide a few more heights within a bounded number of rounds.
//!
//! The validator set may change with the height (as on-chain registration makes it): each
//! validator is a member over a range of heights, every height's set keeps its Byzantine
//! weight under a third, every node runs an engine from the start (a non-member follows
//! the chain and starts voting by itself when its height comes), and every certificate is
//! checked against the set of its own height, also when a lagging node syncs.
//!
//! `scenario` describes a run, `byzantine` what the Byzantine validators do; this file
//! runs the network and checks the invariants.

pub mod byzantine;
pub mod scenario;

use byzantine::Behavior;
use scenario::Scenario;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use timecoin_consensus::{Engine, Input, Output, Signer, SignerState, Timeout, Verdict};
use timecoin_types::{Certificate, Hash256, Keypair, Proposal, Validator, ValidatorSet, Vote};

/// Chain id of every simulated network.
pub const CHAIN_ID: &str = "timecoin-sim";
/// How long a height stays decided by someone before a lagging node is handed the block
/// and certificate (the node's block sync).
const SYNC_LAG_MS: u64 = 1000;
/// How often lagging nodes look for decided heights.
const SYNC_EVERY_MS: u64 = 500;
/// A run that needs more events than this is reported as a failure (a message storm).
const MAX_EVENTS: u64 = 20_000_000;

/// A small deterministic PRNG (SplitMix64): enough for a simulator, no dependency.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }
}

/// The simulated application's block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimBlock {
    /// Height built for.
    pub height: u64,
    /// Round built in.
    pub round: u32,
    /// Index of the builder.
    pub proposer: usize,
    /// Stand-in for transactions.
    pub payload: u64,
    /// Set only by Byzantine builders: the application rejects it.
    pub invalid: bool,
}

impl SimBlock {
    /// The block's hash over all its fields.
    pub fn hash(&self) -> Hash256 {
        Hash256::digest_parts(&[
            &self.height.to_be_bytes(),
            &self.round.to_be_bytes(),
            &(self.proposer as u64).to_be_bytes(),
            &self.payload.to_be_bytes(),
            &[u8::from(self.invalid)],
        ])
    }
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Validators in the run.
    pub validators: usize,
    /// Heights decided (the honest chain's length).
    pub heights: u64,
    /// Decisions made by honest validators through consensus.
    pub decisions: u64,
    /// Heights honest validators took from block sync after lagging behind.
    pub synced: u64,
    /// Of those, heights whose set differs from the previous height's.
    pub synced_across_changes: u64,
    /// Heights of the chain at which the set changed.
    pub set_changes: u64,
    /// Most rounds any honest validator went through for a height decided after the heal.
    pub worst_rounds_after_heal: u32,
    /// Highest round of any honest consensus decision.
    pub max_round: u32,
    /// Per honest consensus decision: milliseconds from starting the height to deciding.
    pub latency_ms: Vec<u64>,
    /// Equivocations caught (all of them by Byzantine validators).
    pub evidence: u64,
    /// Events processed.
    pub events: u64,
}

#[derive(Clone, Debug)]
enum Msg {
    Proposal(Proposal, SimBlock),
    Vote(Vote),
}

enum Event {
    Deliver {
        to: usize,
        from: usize,
        msg: Msg,
    },
    Timer {
        node: usize,
        life: u64,
        timeout: Timeout,
    },
    App {
        node: usize,
        life: u64,
        input: Input<SimBlock>,
    },
    StartHeight {
        node: usize,
        life: u64,
        height: u64,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Heal,
    Sync,
    Garbage {
        node: usize,
    },
}

struct Queued {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Node {
    key: Keypair,
    behavior: Behavior,
    engine: Option<Engine<SimBlock>>,
    /// Bumped at every crash so timers of the dead incarnation are dropped.
    life: u64,
    persisted: Option<SignerState>,
    /// The node's write-ahead log of proposals (with blocks) of undecided heights, kept
    /// across crashes like the signer state: a restored lock is only useful if its block
    /// can be proposed again.
    wal: Vec<(Proposal, SimBlock)>,
    decided: BTreeMap<u64, Hash256>,
    started_at: u64,
}

struct ChainEntry {
    hash: Hash256,
    certificate: Certificate,
    at: u64,
}

struct Sim<'a> {
    s: &'a Scenario,
    rng: Rng,
    /// The set of each height, by the height it starts at.
    sets: BTreeMap<u64, ValidatorSet>,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    now: u64,
    healed: bool,
    /// Highest round honest validators were in at the heal, per height.
    heal_rounds: BTreeMap<u64, u32>,
    target: u64,
    chain: BTreeMap<u64, ChainEntry>,
    report: Report,
}

/// Runs a scenario; `Err` describes the first violated invariant.
pub fn run(s: &Scenario) -> Result<Report, String> {
    let n = s.weights.len();
    let keys: Vec<Keypair> = (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            Keypair::from_seed(seed)
        })
        .collect();
    if s.members.len() != n || s.behaviors.len() != n {
        return Err("a scenario needs a weight, behaviour and membership per validator".into());
    }
    if !s.sets_are_sound() {
        return Err("some height's set is empty or a third Byzantine".into());
    }
    let mut sets = BTreeMap::new();
    for height in s.boundaries() {
        let set = ValidatorSet::new(
            s.members_at(height)
                .into_iter()
                .map(|i| Validator::with_own_reward_address(keys[i].public(), s.weights[i]))
                .collect(),
        )
        .map_err(|e| e.to_string())?;
        sets.insert(height, set);
    }
    let nodes = keys
        .into_iter()
        .zip(&s.behaviors)
        .map(|(key, &behavior)| Node {
            engine: None,
            key,
            behavior,
            life: 0,
            persisted: None,
            wal: Vec::new(),
            decided: BTreeMap::new(),
            started_at: 0,
        })
        .collect();
    let mut sim = Sim {
        s,
        rng: Rng::new(s.seed ^ 0x5EED),
        sets,
        nodes,
        queue: BinaryHeap::new(),
        seq: 0,
        now: 0,
        healed: false,
        heal_rounds: BTreeMap::new(),
        target: u64::MAX,
        chain: BTreeMap::new(),
        report: Report {
            validators: n,
            ..Report::default()
        },
    };
    sim.run()?;
    let heights = sim.report.heights;
    sim.report.set_changes = s
        .boundaries()
        .into_iter()
        .filter(|&h| h > 1 && h <= heights)
        .count() as u64;
    Ok(sim.report)
}

impl Sim<'_> {
    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// The validator set of `height`.
    fn set_at(&self, height: u64) -> &ValidatorSet {
        self.sets
            .range(..=height.max(1))
            .next_back()
            .map(|(_, set)| set)
            .expect("the set of height 1 exists")
    }

    fn honest(&self, i: usize) -> bool {
        self.nodes[i].behavior == Behavior::Honest
    }

    fn slot(&self, height: u64) -> u64 {
        height.saturating_sub(1) * self.s.slot_ms
    }

    fn run(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            match self.nodes[i].behavior {
                Behavior::Honest | Behavior::Equivocate => {
                    self.nodes[i].engine = Some(self.new_engine(i));
                    self.push(
                        0,
                        Event::StartHeight {
                            node: i,
                            life: 0,
                            height: 1,
                        },
                    );
                }
                Behavior::Garbage => {
                    let at = self.rng.range(0, 100);
                    self.push(at, Event::Garbage { node: i });
                }
                Behavior::Silent => {}
            }
        }
        for c in self.s.crashes.clone() {
            self.push(c.at_ms, Event::Crash { node: c.node });
            self.push(c.restart_ms, Event::Restart { node: c.node });
        }
        self.push(self.s.heal_ms(), Event::Heal);
        self.push(SYNC_EVERY_MS, Event::Sync);
        let deadline = self.s.heal_ms() + self.s.budget_after_heal_ms;
        while let Some(Reverse(q)) = self.queue.pop() {
            self.now = q.at;
            self.report.events += 1;
            if self.report.events > MAX_EVENTS {
                return Err("event limit exceeded".into());
            }
            if self.now > deadline {
                return Err(self.stuck("liveness: not every honest validator decided in time"));
            }
            self.dispatch(q.event)?;
            if self.healed && self.all_reached_target() {
                return Ok(());
            }
        }
        Err(self.stuck("event queue ran dry"))
    }

    fn all_reached_target(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.behavior == Behavior::Honest)
            .all(|n| {
                n.decided
                    .last_key_value()
                    .is_some_and(|(h, _)| *h >= self.target)
            })
    }

    fn stuck(&self, what: &str) -> String {
        let states: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.behavior == Behavior::Honest)
            .map(|(i, n)| match &n.engine {
                Some(e) => format!(
                    "{i}:h{}r{}{:?} locked {:?} valid {:?}",
                    e.height(),
                    e.round(),
                    e.step(),
                    e.signer().and_then(|s| s.state().locked),
                    e.signer().and_then(|s| s.state().valid)
                ),
                None => format!("{i}:down"),
            })
            .collect();
        format!(
            "{what} (t={} ms, target height {}, chain {}): {}",
            self.now,
            self.target,
            self.chain.len(),
            states.join(" ")
        )
    }

    fn new_engine(&self, i: usize) -> Engine<SimBlock> {
        let node = &self.nodes[i];
        let signer = Signer::new(node.key.clone(), node.persisted.clone());
        Engine::new(CHAIN_ID.into(), self.s.config.clone(), Some(signer))
    }

    fn dispatch(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Deliver { to, from, msg } => self.deliver(to, from, msg),
            Event::Timer {
                node,
                life,
                timeout,
            } => self.feed(node, life, Input::Timeout(timeout)).map(drop),
            Event::App { node, life, input } => self.feed(node, life, input).map(drop),
            Event::StartHeight { node, life, height } => {
                let (set, next) = (self.set_at(height).clone(), self.set_at(height + 1).clone());
                let n = &mut self.nodes[node];
                let Some(engine) = n.engine.as_mut().filter(|_| n.life == life) else {
                    return Ok(());
                };
                if engine.height() >= height {
                    return Ok(()); // already there by block sync
                }
                n.started_at = self.now;
                let out = engine.start_height(height, set, next);
                self.apply(node, out)
            }
            Event::Crash { node } => {
                let n = &mut self.nodes[node];
                n.engine = None;
                n.life += 1;
                Ok(())
            }
            Event::Restart { node } => {
                let engine = self.new_engine(node);
                let n = &mut self.nodes[node];
                let height = n.decided.last_key_value().map_or(1, |(h, _)| h + 1);
                let (set, next) = (self.set_at(height).clone(), self.set_at(height + 1).clone());
                let n = &mut self.nodes[node];
                let engine = n.engine.insert(engine);
                n.started_at = self.now;
                let out = engine.start_height(height, set, next);
                self.apply(node, out)?;
                let life = self.nodes[node].life;
                let logged: Vec<_> = self.nodes[node].wal.clone();
                for (proposal, block) in logged.into_iter().filter(|(p, _)| p.height == height) {
                    let block_hash = block.hash();
                    let input = Input::Proposal {
                        proposal,
                        block,
                        block_hash,
                    };
                    self.feed(node, life, input)?;
                }
                Ok(())
            }
            Event::Heal => {
                self.healed = true;
                let tip = self.chain.last_key_value().map_or(0, |(h, _)| *h);
                self.target = tip + self.s.heights_after_heal;
                for n in self.nodes.iter().filter(|n| n.behavior == Behavior::Honest) {
                    if let Some(e) = &n.engine {
                        let r = self.heal_rounds.entry(e.height()).or_default();
                        *r = (*r).max(e.round());
                    }
                }
                // Every running honest node sees its peers join again, as the node does
                // when their subscriptions come back.
                for node in 0..self.nodes.len() {
                    let n = &self.nodes[node];
                    if n.behavior == Behavior::Honest && n.engine.is_some() {
                        let life = self.nodes[node].life;
                        self.feed(node, life, Input::PeerJoined)?;
                    }
                }
                Ok(())
            }
            Event::Sync => {
                for i in 0..self.nodes.len() {
                    self.sync(i)?;
                }
                self.push(self.now + SYNC_EVERY_MS, Event::Sync);
                Ok(())
            }
            Event::Garbage { node } => {
                self.garbage(node);
                Ok(())
            }
        }
    }

    /// Hands a lagging node the heights others decided a while ago, as block sync would:
    /// the certificate is verified, then the next height starts.
    fn sync(&mut self, i: usize) -> Result<(), String> {
        loop {
            let Some(engine) = self.nodes[i].engine.as_ref() else {
                return Ok(());
            };
            let height = engine.height();
            if engine.is_decided() {
                return Ok(());
            }
            let Some(entry) = self.chain.get(&height) else {
                return Ok(());
            };
            if self.now < entry.at + SYNC_LAG_MS {
                return Ok(());
            }
            let (hash, cert) = (entry.hash, entry.certificate.clone());
            // Against the set of the certificate's own height, not the node's last one.
            cert.verify_for(CHAIN_ID, self.set_at(height), height, &hash)
                .map_err(|e| format!("synced certificate of height {height}: {e}"))?;
            self.record_decision(i, height, hash)?;
            if self.honest(i) {
                self.report.synced += 1;
                if height > 1 && self.sets.contains_key(&height) {
                    self.report.synced_across_changes += 1;
                }
            }
            let (set, next) = (
                self.set_at(height + 1).clone(),
                self.set_at(height + 2).clone(),
            );
            let n = &mut self.nodes[i];
            n.started_at = self.now;
            let Some(engine) = n.engine.as_mut() else {
                return Ok(());
            };
            let out = engine.start_height(height + 1, set, next);
            self.apply(i, out)?;
        }
    }

    fn deliver(&mut self, to: usize, from: usize, msg: Msg) -> Result<(), String> {
        if let Msg::Proposal(p, b) = &msg {
            self.log_proposal(to, p, b);
        }
        let input = match msg {
            Msg::Proposal(proposal, block) => {
                let block_hash = block.hash();
                Input::Proposal {
                    proposal,
                    block,
                    block_hash,
                }
            }
            Msg::Vote(v) => Input::Vote(v),
        };
        let life = self.nodes[to].life;
        if let Some(Verdict::Rejected(why)) = self.feed(to, life, input)? {
            if self.honest(from) {
                return Err(format!(
                    "node {to} rejected a message of honest node {from}: {why}"
                ));
            }
        }
        Ok(())
    }

    /// Hands an input to a live node and carries out the outputs.
    fn feed(
        &mut self,
        i: usize,
        life: u64,
        input: Input<SimBlock>,
    ) -> Result<Option<Verdict>, String> {
        let n = &mut self.nodes[i];
        if n.life != life {
            return Ok(None);
        }
        let Some(engine) = n.engine.as_mut() else {
            return Ok(None);
        };
        let handled = engine.handle(input);
        self.apply(i, handled.outputs)?;
        Ok(Some(handled.verdict))
    }

    fn apply(&mut self, i: usize, outputs: Vec<Output<SimBlock>>) -> Result<(), String> {
        let life = self.nodes[i].life;
        for o in outputs {
            match o {
                Output::PersistSigner(state) => self.nodes[i].persisted = Some(state),
                Output::BroadcastProposal { proposal, block } => {
                    self.log_proposal(i, &proposal, &block);
                    self.gossip(i, Msg::Proposal(proposal, block));
                }
                Output::BroadcastVote(vote) => self.gossip(i, Msg::Vote(vote)),
                Output::ScheduleTimeout { timeout, after_ms } => {
                    self.push(
                        self.now + after_ms,
                        Event::Timer {
                            node: i,
                            life,
                            timeout,
                        },
                    );
                }
                Output::ValidateBlock {
                    height,
                    block_hash,
                    block,
                } => {
                    let input = Input::BlockValidated {
                        height,
                        block_hash,
                        valid: !block.invalid,
                    };
                    self.answer(i, life, input);
                }
                Output::BuildBlock { height, round } => {
                    let block = SimBlock {
                        height,
                        round,
                        proposer: i,
                        payload: self.rng.next_u64(),
                        invalid: !self.honest(i) && self.rng.chance(500),
                    };
                    let input = Input::BlockBuilt {
                        height,
                        round,
                        block_hash: block.hash(),
                        block,
                    };
                    self.answer(i, life, input);
                }
                Output::Decide {
                    height,
                    round,
                    block_hash,
                    block,
                    certificate,
                } => {
                    if self.honest(i) {
                        certificate
                            .verify_for(CHAIN_ID, self.set_at(height), height, &block_hash)
                            .map_err(|e| format!("node {i} certificate of height {height}: {e}"))?;
                        if block
                            .as_ref()
                            .is_some_and(|b| b.invalid || b.hash() != block_hash)
                        {
                            return Err(format!("node {i} decided an invalid block at {height}"));
                        }
                        self.chain.entry(height).or_insert(ChainEntry {
                            hash: block_hash,
                            certificate,
                            at: self.now,
                        });
                        self.report.decisions += 1;
                        self.report.max_round = self.report.max_round.max(round);
                        self.report
                            .latency_ms
                            .push(self.now - self.nodes[i].started_at);
                        if self.healed {
                            // Rounds since the heal: from the highest round any honest
                            // validator had reached at this height then.
                            let base = self.heal_rounds.get(&height).copied().unwrap_or(0);
                            let r = round.saturating_sub(base) + 1;
                            self.report.worst_rounds_after_heal =
                                self.report.worst_rounds_after_heal.max(r);
                            if r > self.s.round_bound() {
                                return Err(format!(
                                    "node {i} needed {r} rounds for height {height} after the heal (bound {})",
                                    self.s.round_bound()
                                ));
                            }
                        }
                    }
                    self.record_decision(i, height, block_hash)?;
                    let at = self.now.max(self.slot(height + 1));
                    self.push(
                        at,
                        Event::StartHeight {
                            node: i,
                            life,
                            height: height + 1,
                        },
                    );
                }
                Output::Evidence(e) => {
                    self.check_evidence(&e)?;
                    self.report.evidence += 1;
                }
            }
        }
        Ok(())
    }

    /// Agreement: an honest decision must match the chain.
    fn record_decision(&mut self, i: usize, height: u64, hash: Hash256) -> Result<(), String> {
        self.nodes[i].decided.insert(height, hash);
        self.nodes[i].wal.retain(|(p, _)| p.height > height);
        if !self.honest(i) {
            return Ok(());
        }
        match self.chain.get(&height) {
            Some(e) if e.hash != hash => Err(format!(
                "SAFETY: node {i} decided {hash} at height {height}, the chain has {}",
                e.hash
            )),
            _ => {
                self.report.heights = self.report.heights.max(height);
                Ok(())
            }
        }
    }

    /// Logs a proposal a live node receives or makes, bounded like the engine's cache.
    fn log_proposal(&mut self, i: usize, proposal: &Proposal, block: &SimBlock) {
        let n = &mut self.nodes[i];
        let height = n.engine.as_ref().map_or(0, |e| e.height());
        if (height..=height + 2).contains(&proposal.height)
            && n.wal.len() < 64
            && !n.wal.iter().any(|(p, _)| p == proposal)
        {
            n.wal.push((proposal.clone(), block.clone()));
        }
    }

    /// The application's answer to node `i`, which it gives at once.
    fn answer(&mut self, i: usize, life: u64, input: Input<SimBlock>) {
        self.push(
            self.now,
            Event::App {
                node: i,
                life,
                input,
            },
        );
    }

    fn broadcast(&mut self, from: usize, msg: Msg) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, msg.clone());
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        self.send_after(from, to, msg, 0);
    }

    fn send_after(&mut self, from: usize, to: usize, msg: Msg, extra_ms: u64) {
        let cut = self.s.partition.as_ref().is_some_and(|p| {
            p.side[from] != p.side[to] && (p.start_ms..p.heal_ms).contains(&self.now)
        });
        if cut || (!self.healed && self.rng.chance(self.s.drop_per_mille)) {
            return;
        }
        let copies = if self.rng.chance(self.s.dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + extra_ms + self.s.latency_ms + self.rng.range(0, self.s.jitter_ms);
            self.push(
                at,
                Event::Deliver {
                    to,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }
}
