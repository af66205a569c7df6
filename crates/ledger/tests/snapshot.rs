//! State snapshots: a store writes the state of a height in chunks, and a fresh store installs
//! them only whole and only when they hash to the certified header's state root; a bad chunk,
//! a forged manifest, a repeated record or a store that is not fresh leaves the target as it
//! was.

mod common;

use common::*;
use timecoin_ledger::snapshot::{
    chunk_hash, decode_records, Record, SnapshotConfig, SnapshotDir, SnapshotError,
    SnapshotManifest,
};
use timecoin_ledger::{Restore, Store, StoreError, Transaction, TxOutput, MIN_COLLATERAL};
use timecoin_types::{Keypair, COIN};

const CHUNK_RECORDS: u32 = 5;

/// A chain of `height` blocks with a transfer in each of the first ones and a validator
/// registration (so the state holds a stake record), writing snapshots every `height`
/// heights into its directory; returns it and the snapshot's manifest.
fn source(height: u64) -> (Chain, SnapshotManifest) {
    let mut chain = Chain::new();
    let dir = chain.dir.path().join("snapshots");
    chain.store = std::mem::replace(
        &mut chain.store,
        Store::open(&chain.dir.path().join("placeholder.redb")).unwrap(),
    )
    .with_snapshots(SnapshotConfig {
        dir,
        interval: height,
        chunk_records: CHUNK_RECORDS,
    });
    let joiner = Keypair::from_seed([77; 32]);
    let registration = Transaction::build_registration(
        CHAIN,
        vec![
            (chain.allocation(0), &chain.wallet),
            (chain.allocation(1), &chain.wallet),
        ],
        &joiner,
        address(&joiner),
        MIN_COLLATERAL,
        vec![TxOutput {
            address: address(&chain.wallet),
            amount: 2 * ALLOCATION - MIN_COLLATERAL - MIN_FEE,
        }],
    );
    // Its weight outgrows the others': it signs from its first height on.
    chain.validators.push(joiner);
    let mut txs = vec![vec![registration]];
    for i in 2..ALLOCATIONS as u32 {
        let to = address(&Keypair::from_seed([i as u8 + 10; 32]));
        txs.push(vec![chain.spend_allocation(i, to, COIN)]);
    }
    let mut txs = txs.into_iter();
    let mut manifest = None;
    while chain.height() < height {
        let block_txs = txs.next().unwrap_or_default();
        let count = block_txs.len();
        assert_eq!(
            chain.commit(block_txs).transactions.len(),
            count,
            "every transaction fits"
        );
        manifest = snapshot_tip(&chain).or(manifest);
    }
    (chain, manifest.expect("a snapshot at the last height"))
}

/// Writes the snapshot of the tip, if it is a snapshot height.
fn snapshot_tip(chain: &Chain) -> Option<SnapshotManifest> {
    let job = chain.store.begin_snapshot(chain.height(), CHAIN).unwrap()?;
    Some(job.write().unwrap())
}

fn restore_of(chain: &Chain, manifest: &SnapshotManifest) -> Restore {
    let h = manifest.height;
    let set = |h| chain.store.validator_set(h).unwrap();
    Restore {
        manifest: manifest.clone(),
        header: chain.store.header(h).unwrap().unwrap(),
        certificate: chain.store.certificate(h).unwrap().unwrap(),
        sets: [set(h), set(h + 1), set(h + 2)],
    }
}

fn snapshots(chain: &Chain) -> SnapshotDir {
    chain.store.snapshot_dir().unwrap()
}

/// Installs into `target` with the chunks `serve` hands out.
fn install(
    target: &Chain,
    restore: &Restore,
    mut serve: impl FnMut(u32) -> Vec<u8>,
) -> Result<(), StoreError> {
    target
        .store
        .install_snapshot(&target.genesis, restore, |i| Ok(serve(i)))
}

/// The target still holds only its genesis.
fn assert_untouched(target: &Chain) {
    assert_eq!(target.height(), 0);
    assert_eq!(
        target.store.recompute_state().unwrap().root(),
        target.genesis.state().root()
    );
    assert_eq!(
        target
            .store
            .unspent(&address(&target.wallet))
            .unwrap()
            .len(),
        ALLOCATIONS
    );
}

#[test]
fn a_snapshot_installs_whole_and_the_chain_goes_on_from_it() {
    let (source, manifest) = source(12);
    assert!(manifest.chunks.len() > 3, "several chunks: {manifest:?}");
    manifest.check(CHAIN).unwrap();
    let dir = snapshots(&source);
    assert_eq!(dir.heights().unwrap(), vec![12]);
    let last = manifest.chunks.len() as u32 - 1;
    let records = decode_records(&dir.chunk(12, last).unwrap()).unwrap();
    assert!(
        matches!(records.last(), Some(Record::Stake(..))),
        "the stake record comes last: {records:?}"
    );

    let target = Chain::new();
    install(&target, &restore_of(&source, &manifest), |i| {
        dir.chunk(12, i).unwrap()
    })
    .unwrap();
    assert_eq!(target.store.tip().unwrap(), source.store.tip().unwrap());
    let state = target.store.recompute_state().unwrap();
    assert_eq!(state.root(), source.store.recompute_state().unwrap().root());
    for key in [&source.wallet, &Keypair::from_seed([12; 32])] {
        assert_eq!(
            target.store.unspent(&address(key)).unwrap(),
            source.store.unspent(&address(key)).unwrap()
        );
    }
    assert_eq!(
        target.store.validator_set(13).unwrap(),
        source.store.validator_set(13).unwrap()
    );
    assert!(matches!(
        target.store.block(12),
        Err(StoreError::Pruned {
            retained_from: 13,
            ..
        })
    ));
    assert!(matches!(
        target.store.validator_set(5),
        Err(StoreError::Pruned { .. })
    ));
    assert!(target.store.header(12).unwrap().is_some());

    // The next blocks of the source apply on the restored store, which checks their state
    // roots against its own state.
    for _ in 0..3 {
        let block = source.commit(Vec::new());
        target
            .store
            .apply_block(&block, &source.certify(&block), &target.genesis)
            .unwrap();
    }
    assert_eq!(target.store.tip().unwrap(), source.store.tip().unwrap());
    assert_eq!(
        target.store.recompute_state().unwrap().root(),
        source.store.recompute_state().unwrap().root()
    );
    // Once there, it refuses another snapshot.
    let again = install(&target, &restore_of(&source, &manifest), |i| {
        dir.chunk(12, i).unwrap()
    });
    assert!(
        matches!(again, Err(StoreError::NotFresh { tip: 15 })),
        "{again:?}"
    );
}

#[test]
fn a_bad_chunk_a_forged_manifest_or_a_repeated_record_leaves_the_store_untouched() {
    let (source, manifest) = source(12);
    let dir = snapshots(&source);
    let chunk = |i| dir.chunk(12, i).unwrap();
    let target = Chain::new();
    let restore = restore_of(&source, &manifest);

    // One byte flipped in the last chunk, after the others were written.
    let last = manifest.chunks.len() as u32 - 1;
    let err = install(&target, &restore, |i| {
        let mut bytes = chunk(i);
        if i == last {
            bytes[5] ^= 1;
        }
        bytes
    })
    .unwrap_err();
    assert!(
        matches!(&err, StoreError::Snapshot(SnapshotError::Chunk { index, .. }) if *index == last),
        "{err}"
    );
    assert_untouched(&target);

    // A manifest whose hashes match forged chunks: one output's amount raised.
    let mut forged = restore_of(&source, &manifest);
    let mut first = decode_records(&chunk(0)).unwrap();
    if let Record::Output(_, output) = &mut first[0] {
        output.amount += COIN;
    }
    let mut forged_chunk = Vec::new();
    first.iter().for_each(|r| r.encode_into(&mut forged_chunk));
    forged.manifest.chunks[0] = chunk_hash(&forged_chunk);
    let err = install(&target, &forged, |i| {
        if i == 0 {
            forged_chunk.clone()
        } else {
            chunk(i)
        }
    })
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Snapshot(SnapshotError::WrongRoot { .. })),
        "{err}"
    );
    assert_untouched(&target);

    // A record repeated: within a chunk it breaks the order.
    let mut repeated = first.clone();
    repeated[1] = repeated[0];
    let mut bytes = Vec::new();
    repeated.iter().for_each(|r| r.encode_into(&mut bytes));
    assert!(decode_records(&bytes).unwrap_err().contains("out of order"));
    // Across chunks: chunk 1 made a copy of chunk 0.
    let mut copied = restore_of(&source, &manifest);
    copied.manifest.chunks[1] = copied.manifest.chunks[0];
    let err = install(&target, &copied, |i| chunk(if i == 1 { 0 } else { i })).unwrap_err();
    assert!(
        matches!(&err, StoreError::Snapshot(SnapshotError::Chunk { index: 1, reason }) if reason.contains("does not follow")),
        "{err}"
    );
    assert_untouched(&target);

    // A header that is not the manifest's block.
    let mut other = restore_of(&source, &manifest);
    other.header = source.store.header(11).unwrap().unwrap();
    let err = install(&target, &other, chunk).unwrap_err();
    assert!(
        matches!(err, StoreError::Snapshot(SnapshotError::Manifest(_))),
        "{err}"
    );
    assert_untouched(&target);
}

#[test]
fn only_the_newest_snapshots_are_kept_and_a_partial_one_is_not_listed() {
    let (source, _) = source(4);
    for _ in 0..8 {
        source.commit(Vec::new());
        snapshot_tip(&source);
    }
    let dir = snapshots(&source);
    assert_eq!(dir.heights().unwrap(), vec![8, 12]);
    // One job at a time, and only for the tip at a snapshot height.
    for _ in 0..4 {
        source.commit(Vec::new());
    }
    let tip = source.height();
    assert_eq!(tip, 16);
    let job = source
        .store
        .begin_snapshot(tip, CHAIN)
        .unwrap()
        .expect("a job");
    assert!(source.store.begin_snapshot(tip, CHAIN).unwrap().is_none());
    drop(job);
    assert!(source.store.begin_snapshot(tip, CHAIN).unwrap().is_some());
    assert!(source
        .store
        .begin_snapshot(tip - 4, CHAIN)
        .unwrap()
        .is_none());
    source.commit(Vec::new());
    assert!(source
        .store
        .begin_snapshot(tip + 1, CHAIN)
        .unwrap()
        .is_none());
    // A snapshot being written is not listed.
    std::fs::create_dir_all(source.dir.path().join("snapshots/20.partial")).unwrap();
    assert_eq!(dir.heights().unwrap(), vec![8, 12]);
}
