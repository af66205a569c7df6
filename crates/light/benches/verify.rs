//! Verifying a 100-block bundle whose validator set changes at every height: the worst case
//! of a bundle, one light block per height, each with a certificate of 4 signatures.

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use timecoin_light::{verify, Trust};

fn bench(c: &mut Criterion) {
    let chain = common::chain(4, 101, 1);
    let bundle = chain.bundle();
    assert_eq!(bundle.blocks.len(), 100);
    c.bench_function("verify 100 light blocks, a set change at each", |b| {
        b.iter(|| verify(Trust::Genesis(&chain.genesis), &bundle).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
