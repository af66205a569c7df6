//! What a run depends on: the validators (weights, behaviours, membership over heights),
//! the network (latency, jitter, drops, duplicates, a partition) and crashes, drawn from
//! one seed or written out by a test.

use super::{Behavior, Rng};
use timecoin_consensus::Config;

/// The heights at which a validator is in the set: from `from` until before `until`.
/// On chain, a registration finalized at height h gives `from = h + 2`, a deregistration
/// at h gives `until = h + 2`; the simulator only needs the resulting heights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    /// First height in the set.
    pub from: u64,
    /// First height out of the set again, if it leaves.
    pub until: Option<u64>,
}

impl Membership {
    /// A member of every height's set.
    pub const ALWAYS: Membership = Membership {
        from: 1,
        until: None,
    };

    /// True when the validator is in the set of `height`.
    pub fn contains(&self, height: u64) -> bool {
        height >= self.from && self.until.is_none_or(|u| height < u)
    }
}

/// Messages crossing between the two sides are lost from `start_ms` until `heal_ms`.
#[derive(Clone, Debug)]
pub struct Partition {
    /// When the cut starts.
    pub start_ms: u64,
    /// When it heals.
    pub heal_ms: u64,
    /// Side of each validator.
    pub side: Vec<bool>,
}

/// An honest validator that stops at `at_ms` and restarts at `restart_ms` from its
/// persisted signer state and decided chain only.
#[derive(Clone, Debug)]
pub struct Crash {
    /// Which validator.
    pub node: usize,
    /// When it dies.
    pub at_ms: u64,
    /// When it comes back.
    pub restart_ms: u64,
}

/// Everything a run depends on.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The seed of every random choice.
    pub seed: u64,
    /// Weight of each validator.
    pub weights: Vec<u64>,
    /// Role of each validator.
    pub behaviors: Vec<Behavior>,
    /// The heights at which each validator is in the set.
    pub members: Vec<Membership>,
    /// Minimum one-way delay.
    pub latency_ms: u64,
    /// Extra uniform delay `0..=jitter_ms` (it also reorders messages).
    pub jitter_ms: u64,
    /// Messages lost before the heal, per thousand.
    pub drop_per_mille: u64,
    /// Messages delivered twice, per thousand.
    pub dup_per_mille: u64,
    /// An optional network split.
    pub partition: Option<Partition>,
    /// Honest crashes.
    pub crashes: Vec<Crash>,
    /// TSDC slot length: height h starts at `(h - 1) × slot_ms` at the earliest.
    pub slot_ms: u64,
    /// Heights every honest validator must decide after the heal.
    pub heights_after_heal: u64,
    /// Simulated time allowed for them.
    pub budget_after_heal_ms: u64,
    /// Engine configuration.
    pub config: Config,
}

impl Scenario {
    /// A random adversarial scenario: 4 to 10 validators (sometimes up to 40), Byzantine
    /// validators with just under a third of the weight, latency, jitter, drops,
    /// duplicates, and maybe a partition and crashes.
    pub fn random(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let n = if rng.chance(30) {
            rng.range(11, 40)
        } else {
            rng.range(4, 10)
        } as usize;
        let equal = rng.chance(500);
        let weights: Vec<u64> = (0..n)
            .map(|_| if equal { 1 } else { rng.range(1, 10) })
            .collect();
        let total: u64 = weights.iter().sum();
        // Greedily make validators Byzantine in a random order while their weight stays
        // below a third: "just under 1/3".
        let mut behaviors = vec![Behavior::Honest; n];
        let mut byz = 0u64;
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.range(0, i as u64) as usize);
        }
        for &i in &order {
            if 3 * (byz + weights[i]) < total {
                byz += weights[i];
                behaviors[i] = Behavior::draw_byzantine(&mut rng);
            }
        }
        let partition = rng.chance(500).then(|| {
            let start_ms = rng.range(0, 3000);
            Partition {
                start_ms,
                heal_ms: start_ms + rng.range(1000, 8000),
                side: (0..n).map(|_| rng.chance(500)).collect(),
            }
        });
        let honest: Vec<usize> = (0..n)
            .filter(|&i| behaviors[i] == Behavior::Honest)
            .collect();
        let crashes = (0..rng.range(0, 2))
            .map(|_| {
                let at_ms = rng.range(0, 6000);
                Crash {
                    node: honest[rng.range(0, honest.len() as u64 - 1) as usize],
                    at_ms,
                    restart_ms: at_ms + rng.range(200, 10_000),
                }
            })
            .collect();
        let mut s = Scenario {
            seed,
            members: vec![Membership::ALWAYS; n],
            weights,
            behaviors,
            latency_ms: rng.range(5, 60),
            jitter_ms: rng.range(0, 100),
            drop_per_mille: rng.range(0, 30),
            dup_per_mille: rng.range(0, 100),
            partition,
            crashes,
            slot_ms: if rng.chance(500) {
                0
            } else {
                rng.range(200, 1500)
            },
            heights_after_heal: 3,
            budget_after_heal_ms: 120_000,
            config: Config::default(),
        };
        // Drawn from a generator of their own so that seeds without set changes keep the
        // scenarios they always had.
        let mut changes = Rng::new(seed ^ 0x005E_7C4A_96E5);
        if changes.chance(400) {
            s.change_sets(&mut changes);
        }
        s
    }

    /// Adds set changes: one to three validators join at heights 2 to 7 (some leave again,
    /// some are Byzantine) and up to two first members leave; a change that would give
    /// some height's set a Byzantine third, or an empty set, is not made.
    pub fn change_sets(&mut self, rng: &mut Rng) {
        let first = self.weights.len();
        let equal = self.weights.iter().all(|&w| w == self.weights[0]);
        for _ in 0..rng.range(1, 3) {
            self.weights.push(if equal {
                self.weights[0]
            } else {
                rng.range(1, 10)
            });
            self.behaviors.push(Behavior::Honest);
            let from = rng.range(2, 7);
            let until = rng.chance(300).then(|| from + rng.range(1, 4));
            self.members.push(Membership { from, until });
            if let Some(p) = &mut self.partition {
                p.side.push(rng.chance(500));
            }
        }
        for i in first..self.weights.len() {
            if rng.chance(500) {
                self.behaviors[i] = Behavior::draw_byzantine(rng);
                if !self.sets_are_sound() {
                    self.behaviors[i] = Behavior::Honest;
                }
            }
        }
        for _ in 0..rng.range(0, 2) {
            let i = rng.range(0, first as u64 - 1) as usize;
            let before = self.members[i];
            self.members[i].until = Some(rng.range(2, 8));
            if !self.sets_are_sound() {
                self.members[i] = before;
            }
        }
    }

    /// The heights at which the set changes, with 1.
    pub fn boundaries(&self) -> Vec<u64> {
        let mut b: Vec<u64> = self
            .members
            .iter()
            .flat_map(|m| [Some(m.from), m.until])
            .flatten()
            .chain([1])
            .collect();
        b.sort_unstable();
        b.dedup();
        b
    }

    /// The validators in the set of `height`.
    pub fn members_at(&self, height: u64) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].contains(height))
            .collect()
    }

    /// True when every height's set is non-empty and its Byzantine weight is below a third.
    pub fn sets_are_sound(&self) -> bool {
        self.boundaries().into_iter().all(|h| {
            let members = self.members_at(h);
            let total: u64 = members.iter().map(|&i| self.weights[i]).sum();
            let byz: u64 = members
                .iter()
                .filter(|&&i| self.behaviors[i] != Behavior::Honest)
                .map(|&i| self.weights[i])
                .sum();
            total > 0 && 3 * byz < total
        })
    }

    /// A fault-free network of `n` equal validators with a fixed one-way delay and no
    /// jitter, for latency figures.
    pub fn calm(n: usize, latency_ms: u64, heights: u64) -> Scenario {
        Scenario {
            seed: 0,
            members: vec![Membership::ALWAYS; n],
            weights: vec![1; n],
            behaviors: vec![Behavior::Honest; n],
            latency_ms,
            jitter_ms: 0,
            drop_per_mille: 0,
            dup_per_mille: 0,
            partition: None,
            crashes: Vec::new(),
            slot_ms: 1000,
            heights_after_heal: heights,
            budget_after_heal_ms: heights * 10_000,
            config: Config::default(),
        }
    }

    /// When the last fault ends: the partition heals and every crashed node is back.
    pub fn heal_ms(&self) -> u64 {
        let p = self.partition.as_ref().map_or(0, |p| p.heal_ms);
        self.crashes.iter().map(|c| c.restart_ms).fold(p, u64::max)
    }

    /// Number of Byzantine validators.
    pub fn byzantine(&self) -> usize {
        self.behaviors
            .iter()
            .filter(|b| **b != Behavior::Honest)
            .count()
    }

    /// Rounds any honest validator may need for a height after the heal: the round in
    /// progress, one per Byzantine proposer in a row, up to two honest proposers that did
    /// not yet hold the latest valid value (valid values spread on the round timer, and a
    /// validator that lagged a height gets them only once it joins), one that succeeds.
    pub fn round_bound(&self) -> u32 {
        self.byzantine() as u32 + 4
    }
}
