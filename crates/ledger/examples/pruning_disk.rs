//! The README's pruning figures: the same steady load (3,000 blocks of transfers) kept whole,
//! pruned to 1000 and to 10 bodies, with the redb file's size and the pages in use after each
//! 500 blocks: `cargo run --release -p timecoin-ledger --example pruning_disk`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::growth::grow;

fn main() {
    for retain in [0, 1000, 10] {
        let g = grow(retain, 6, 500);
        let mib = |v: &[u64]| {
            v.iter()
                .map(|b| format!("{:.1}", *b as f64 / (1 << 20) as f64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        eprintln!(
            "retain_blocks = {retain}: after each 500 blocks, file MiB [{}], pages in use MiB [{}], \
             block bytes applied {:.1} MiB",
            mib(&g.file),
            mib(&g.used),
            g.bodies.iter().sum::<u64>() as f64 / (1 << 20) as f64
        );
    }
}
