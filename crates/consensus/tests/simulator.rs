//! Deterministic simulation of whole networks running the real engine.
//!
//! `SIM_SEEDS=5000` runs that many random seeds (default 200, from `SIM_FIRST_SEED`, default
//! 0); `SIM_SEED=1234` replays one.
//! A failing seed prints the command that replays it.

mod sim;

use sim::byzantine::Behavior;
use sim::scenario::{Crash, Membership, Partition, Scenario};
use sim::{run, Report};
use std::ops::Range;

fn replay_hint(seed: u64) -> String {
    format!(
        "replay: SIM_SEED={seed} cargo test -p timecoin-consensus --test simulator -- --nocapture"
    )
}

/// The seeds of this invocation, split between `parts` tests so they run in parallel.
fn seeds(part: u64, parts: u64) -> Vec<u64> {
    if let Ok(one) = std::env::var("SIM_SEED") {
        let seed = one.trim().parse().expect("SIM_SEED must be a number");
        return if part == 0 { vec![seed] } else { Vec::new() };
    }
    let count: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(200);
    let first: u64 = std::env::var("SIM_FIRST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (first..first + count)
        .filter(|s| s % parts == part)
        .collect()
}

fn run_random(part: u64, parts: u64) {
    let mut total = Report::default();
    let mut runs = 0;
    for seed in seeds(part, parts) {
        let scenario = Scenario::random(seed);
        let report = match run(&scenario) {
            Ok(r) => r,
            Err(e) => panic!(
                "seed {seed} failed: {e}\n{scenario:?}\n{}",
                replay_hint(seed)
            ),
        };
        runs += 1;
        total.validators = total.validators.max(report.validators);
        total.heights += report.heights;
        total.decisions += report.decisions;
        total.synced += report.synced;
        total.synced_across_changes += report.synced_across_changes;
        total.set_changes += report.set_changes;
        total.evidence += report.evidence;
        total.events += report.events;
        total.worst_rounds_after_heal = total
            .worst_rounds_after_heal
            .max(report.worst_rounds_after_heal);
        total.latency_ms.extend(report.latency_ms);
    }
    println!(
        "part {part}: {runs} seeds, up to {} validators, {} heights, {} set changes, {} consensus decisions, {} synced ({} across a set change), {} evidence, {} events, worst rounds after heal {}, slowest decision {} ms",
        total.validators,
        total.heights,
        total.set_changes,
        total.decisions,
        total.synced,
        total.synced_across_changes,
        total.evidence,
        total.events,
        total.worst_rounds_after_heal,
        total.latency_ms.iter().max().copied().unwrap_or(0),
    );
}

/// Runs the random scenario of each of `seeds` as `adjust` changes it; a failure names the
/// seed, the change and the scenario.
fn run_adjusted(seeds: Range<u64>, change: &str, adjust: impl Fn(u64, &mut Scenario)) {
    for seed in seeds {
        let mut s = Scenario::random(seed);
        adjust(seed, &mut s);
        if let Err(e) = run(&s) {
            panic!("seed {seed} {change}: {e}\n{s:?}");
        }
    }
}

#[test]
fn random_seeds_part_0() {
    run_random(0, 2);
}

#[test]
fn random_seeds_part_1() {
    run_random(1, 2);
}

#[test]
fn calm_network_decides_in_three_message_delays() {
    for n in [4, 7] {
        let report = run(&Scenario::calm(n, 50, 5)).unwrap();
        assert_eq!(report.heights, 5);
        assert!(
            report.latency_ms.iter().all(|&ms| ms == 150),
            "{:?}",
            report.latency_ms
        );
    }
}

#[test]
fn a_silent_round_zero_proposer_costs_its_propose_timeout_and_five_message_delays() {
    // One silent validator of four: at its heights, round 0 waits out the propose
    // timeout (1000 ms), the nil prepares and nil precommits take one delay each and move
    // everyone to round 1 at once, which decides in three delays.
    let mut s = Scenario::calm(4, 50, 12);
    s.behaviors[0] = Behavior::Silent;
    let report = run(&s).unwrap();
    assert!(
        report.latency_ms.iter().all(|&ms| ms == 150 || ms == 1250),
        "{:?}",
        report.latency_ms
    );
    assert!(report.latency_ms.contains(&1250), "{:?}", report.latency_ms);
}

#[test]
fn the_set_changes_with_a_byzantine_joiner_and_a_node_catching_up_across_the_changes() {
    // Heights (slot 400 ms): 4 first members; an honest one joins at 3, an equivocator
    // at 4, a silent one at 5 while member 1 leaves, and member 0 leaves at 12. Node 7
    // (an always-member of weight 1) is down from 300 ms to 8 s and catches up by sync
    // across all of it. Each height's Byzantine weight stays under a third.
    let mut s = Scenario::calm(8, 20, 3);
    s.slot_ms = 400;
    s.jitter_ms = 20;
    s.weights = vec![3, 3, 3, 3, 3, 1, 1, 1];
    s.behaviors[5] = Behavior::Equivocate;
    s.behaviors[6] = Behavior::Silent;
    let joins = |from| Membership { from, until: None };
    s.members[0].until = Some(12);
    s.members[1].until = Some(5);
    s.members[4] = joins(3);
    s.members[5] = joins(4);
    s.members[6] = joins(5);
    s.crashes = vec![Crash {
        node: 7,
        at_ms: 300,
        restart_ms: 8000,
    }];
    let report = run(&s).unwrap();
    assert!(report.heights >= 13, "{report:?}");
    assert_eq!(report.set_changes, 4, "{report:?}");
    assert!(report.synced_across_changes >= 3, "{report:?}");
    assert!(
        report.evidence > 0,
        "the joined equivocator was caught: {report:?}"
    );
}

#[test]
fn random_set_changes_stay_safe_and_live() {
    // Scenario::random changes the set in some seeds; these force it on a few more.
    run_adjusted(0..6, "with set changes", |seed, s| {
        s.change_sets(&mut sim::Rng::new(seed));
    });
}

#[test]
fn heights_that_take_many_rounds_drop_old_rounds_and_still_decide() {
    // Timeouts far below the message delay until they grow with the round: every height
    // goes through more rounds than the engine keeps (MAX_PAST_ROUNDS), so old rounds are
    // dropped while the height is still open. The fault is the timing alone; it "heals"
    // at 20 s, after which the laggards only need to reach the chain's tip.
    let mut s = Scenario::calm(5, 40, 0);
    s.jitter_ms = 40;
    s.dup_per_mille = 20;
    s.slot_ms = 0;
    s.config.timeout_propose_ms = 10;
    s.config.timeout_prepare_ms = 10;
    s.config.timeout_precommit_ms = 10;
    s.config.timeout_delta_ms = 5;
    s.partition = Some(Partition {
        start_ms: 0,
        heal_ms: 20_000,
        side: vec![false; 5],
    });
    s.budget_after_heal_ms = 60_000;
    let report = run(&s).unwrap();
    assert!(report.heights >= 3, "{report:?}");
    assert!(
        report.max_round > timecoin_consensus::MAX_PAST_ROUNDS,
        "{report:?}"
    );
}

#[test]
fn two_hundred_validators_with_faults() {
    let mut s = Scenario::calm(200, 20, 1);
    s.seed = 7;
    s.jitter_ms = 30;
    s.dup_per_mille = 20;
    // 66 silent validators: just under a third of 200.
    for b in s.behaviors.iter_mut().step_by(3).take(66) {
        *b = Behavior::Silent;
    }
    let report = run(&s).unwrap();
    assert!(report.heights >= 1);
    assert!(report.worst_rounds_after_heal <= s.round_bound());
}

#[test]
fn every_honest_validator_crashing_at_once_stays_safe_and_live() {
    run_adjusted(0..8, "with every honest validator crashing", |seed, s| {
        s.partition = None;
        let at_ms = 300 + seed * 97;
        s.crashes = (0..s.weights.len())
            .filter(|&i| s.behaviors[i] == Behavior::Honest)
            .map(|node| Crash {
                node,
                at_ms,
                restart_ms: at_ms + 500,
            })
            .collect();
    });
}
