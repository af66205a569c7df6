//! Runs the deterministic simulator and prints the figures quoted in status reports:
//! seeds run, validators per seed, blocks decided, the worst rounds needed after the
//! network heals, and the finality latency of fault-free networks of 4, 16 and 100
//! validators at 50 ms one-way delay.
//!
//! `cargo run -p timecoin-consensus --example sim_report --release` (`SIM_SEEDS=N` to
//! change the number of random seeds, 200 by default).

#[path = "../tests/sim/mod.rs"]
mod sim;

use sim::byzantine::Behavior;
use sim::scenario::Scenario;
use sim::{run, Report};

/// One-way delay of the latency runs.
const DELAY_MS: u64 = 50;
/// Heights decided per latency run.
const LATENCY_HEIGHTS: u64 = 5;

fn main() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(200);
    let mut total = Report::default();
    let (mut min_n, mut max_n, mut sum_n, mut sum_byz) = (usize::MAX, 0, 0, 0);
    let mut seeds_with_changes = 0u64;
    for seed in 0..seeds {
        let scenario = Scenario::random(seed);
        let report = run(&scenario).unwrap_or_else(|e| {
            panic!("seed {seed} failed: {e}\nreplay: SIM_SEED={seed} cargo test -p timecoin-consensus --test simulator -- --nocapture")
        });
        min_n = min_n.min(report.validators);
        max_n = max_n.max(report.validators);
        sum_n += report.validators;
        sum_byz += scenario.byzantine();
        total.heights += report.heights;
        total.decisions += report.decisions;
        total.synced += report.synced;
        total.synced_across_changes += report.synced_across_changes;
        total.set_changes += report.set_changes;
        seeds_with_changes += u64::from(report.set_changes > 0);
        total.evidence += report.evidence;
        total.events += report.events;
        total.worst_rounds_after_heal = total
            .worst_rounds_after_heal
            .max(report.worst_rounds_after_heal);
        total.max_round = total.max_round.max(report.max_round);
    }
    println!("random adversarial seeds: {seeds}");
    println!(
        "validators per seed: {min_n}..{max_n} (mean {}.{:02}), Byzantine per seed: mean {}.{:02}",
        sum_n as u64 / seeds,
        sum_n as u64 * 100 / seeds % 100,
        sum_byz as u64 / seeds,
        sum_byz as u64 * 100 / seeds % 100
    );
    println!(
        "blocks decided: {} heights, {} consensus decisions by honest validators, {} heights taken by sync",
        total.heights, total.decisions, total.synced
    );
    println!(
        "validator-set changes: {} in {seeds_with_changes} seeds; {} heights synced across a change",
        total.set_changes, total.synced_across_changes
    );
    println!("equivocations caught: {}", total.evidence);
    println!("simulated events: {}", total.events);
    println!(
        "worst rounds needed after heal: {} (highest round of any decision: {})",
        total.worst_rounds_after_heal, total.max_round
    );
    println!(
        "finality latency, fault-free, {DELAY_MS} ms one-way delay, {LATENCY_HEIGHTS} heights:"
    );
    for n in [4, 16, 100] {
        let report = run(&Scenario::calm(n, DELAY_MS, LATENCY_HEIGHTS))
            .unwrap_or_else(|e| panic!("calm run of {n} validators failed: {e}"));
        let count = report.latency_ms.len() as u64;
        let sum: u64 = report.latency_ms.iter().sum();
        let max = report.latency_ms.iter().max().copied().unwrap_or(0);
        let mean = sum / count.max(1);
        println!(
            "  {n:>3} validators: mean {mean} ms = {}.{} message delays, max {max} ms = {}.{} message delays ({count} decisions)",
            mean / DELAY_MS,
            mean * 10 / DELAY_MS % 10,
            max / DELAY_MS,
            max * 10 / DELAY_MS % 10
        );
    }
    // A silent validator of four: the heights it should open in round 0 cost the propose
    // timeout plus the round change.
    let mut s = Scenario::calm(4, DELAY_MS, 4 * LATENCY_HEIGHTS);
    s.behaviors[0] = Behavior::Silent;
    let report = run(&s).unwrap_or_else(|e| panic!("silent-proposer run failed: {e}"));
    let worst = report.latency_ms.iter().max().copied().unwrap_or(0);
    println!(
        "  4 validators, one silent: a height it opens takes {worst} ms (propose timeout {} ms + {} message delays)",
        s.config.timeout_propose_ms,
        worst.saturating_sub(s.config.timeout_propose_ms) / DELAY_MS
    );
}
