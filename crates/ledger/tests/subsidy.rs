//! The subsidy against reference values computed outside the crate with Python's decimal
//! module at 50 digits (tests/vectors/gen_subsidy.py → tests/vectors/subsidy.txt). Each
//! reference is the exact value rounded down; we allow one base unit of difference.

use timecoin_ledger::subsidy;
use timecoin_types::COIN;

const VECTORS: &str = include_str!("vectors/subsidy.txt");

#[test]
fn subsidy_matches_high_precision_reference_within_one_unit() {
    let mut checked = 0;
    let mut exact = 0;
    let mut max_height = 0;
    for (n, line) in VECTORS.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(h), Some(reference), None) = (fields.next(), fields.next(), fields.next()) else {
            panic!("line {}: expected two fields: {line}", n + 1);
        };
        let h: u64 = h.parse().unwrap();
        let reference: u64 = reference.parse().unwrap();
        let ours = subsidy(h);
        assert!(
            ours.abs_diff(reference) <= 1,
            "subsidy({h}) = {ours}, reference floor = {reference}"
        );
        if ours == reference {
            exact += 1;
        }
        max_height = max_height.max(h);
        checked += 1;
    }
    assert!(checked > 5_000, "only {checked} vectors");
    assert_eq!(max_height, 1_000_000_000);
    // Rounding down a slightly low approximation may land one below the floor, but rarely.
    assert!(exact * 100 >= checked * 99, "{exact} of {checked} exact");
}

#[test]
fn subsidy_of_height_one_is_exactly_one_hundred_time() {
    assert_eq!(subsidy(1), 100 * COIN);
}
