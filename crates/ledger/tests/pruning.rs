//! Block-body pruning (`Store::retaining`): bodies outside the window go in the apply's own
//! transaction, headers, certificates, validator sets and the transaction index stay, reads
//! tell a pruned height from a missing one, reopening keeps it all, and the file stops growing
//! with the bodies once the window is full.

mod common;

use common::growth::{commit, grow};
use common::*;
use timecoin_ledger::{Block, Store, StoreError};
use timecoin_types::{Address, Certificate, COIN};

/// Commits `n` empty blocks, recording each in `blocks` and its certificate in
/// `certificates`.
fn commit_empty(
    chain: &Chain,
    n: usize,
    blocks: &mut Vec<Block>,
    certificates: &mut Vec<Option<Certificate>>,
) {
    for _ in 0..n {
        let (block, certificate) = commit(chain, Vec::new());
        blocks.push(block);
        certificates.push(Some(certificate));
    }
}

/// Every read of a store keeping bodies from `retained_from` on, `blocks[h]` and
/// `certificates[h]` being what was applied at height h.
fn check_reads(
    chain: &Chain,
    blocks: &[Block],
    certificates: &[Option<Certificate>],
    retained_from: u64,
) {
    let store = &chain.store;
    let tip = blocks.len() as u64 - 1;
    assert_eq!(store.tip().unwrap(), (tip, blocks[tip as usize].hash()));
    assert_eq!(store.pruned_below().unwrap(), retained_from);
    for (height, block) in blocks.iter().enumerate() {
        let height = height as u64;
        if height < retained_from {
            let err = store.block(height).unwrap_err();
            assert!(
                matches!(err, StoreError::Pruned { height: h, retained_from: r } if h == height && r == retained_from),
                "{err}"
            );
            assert_eq!(
                err.to_string(),
                format!("block {height} is pruned: this store keeps block bodies from height {retained_from} on")
            );
        } else {
            assert_eq!(store.block(height).unwrap().as_ref(), Some(block));
        }
        assert_eq!(store.header(height).unwrap().as_ref(), Some(&block.header));
        assert_eq!(store.block_hash(height).unwrap(), Some(block.hash()));
        assert_eq!(store.height_of(&block.hash()).unwrap(), Some(height));
        assert_eq!(
            store.certificate(height).unwrap(),
            certificates[height as usize]
        );
        assert_eq!(
            store.validator_set(height).unwrap(),
            chain.genesis.validator_set()
        );
    }
    // Beyond the tip is missing, not pruned.
    assert_eq!(store.block(tip + 1).unwrap(), None);
    assert_eq!(store.header(tip + 1).unwrap(), None);
    assert_eq!(store.certificate(tip + 1).unwrap(), None);
    // The sets of the next heights are known as ever.
    for height in tip + 1..=tip + 2 {
        assert_eq!(
            store.validator_set(height).unwrap(),
            chain.genesis.validator_set()
        );
    }
    assert_eq!(store.set_changes(0, tip).unwrap(), Vec::<u64>::new());
}

#[test]
fn bodies_outside_the_window_are_pruned_and_headers_certificates_and_sets_kept() {
    let mut chain = Chain::new();
    chain.reopen_retaining(10);
    let payee = Address([7; 20]);
    let transfer = chain.spend_allocation(0, payee, COIN);
    let mut blocks = vec![chain.genesis.genesis_block()];
    let mut certificates = vec![None];
    for height in 1..=50u64 {
        let txs = if height == 5 {
            vec![transfer.clone()]
        } else {
            Vec::new()
        };
        let (block, certificate) = commit(&chain, txs);
        blocks.push(block);
        certificates.push(Some(certificate));
        // Exactly the last 10 bodies, at every height.
        assert_eq!(
            chain.store.pruned_below().unwrap(),
            (height + 1).saturating_sub(10)
        );
    }
    check_reads(&chain, &blocks, &certificates, 41);
    // A pruned block's transaction is still indexed with its height and fee; its block's
    // fees need the body.
    let location = chain.store.transaction(&transfer.txid()).unwrap().unwrap();
    assert_eq!((location.height, location.fee), (5, MIN_FEE));
    assert!(matches!(
        chain.store.block_fees(5),
        Err(StoreError::Pruned { height: 5, .. })
    ));
    assert_eq!(chain.store.balance(&payee).unwrap(), COIN);

    chain.reopen();
    assert_eq!(chain.store.retain_blocks(), 10);
    check_reads(&chain, &blocks, &certificates, 41);

    // A refused block prunes nothing: pruning is part of the apply's transaction.
    let next = chain.build(Vec::new());
    let weak = chain.certify_by(&next, &chain.validators[..1]);
    assert!(chain
        .store
        .apply_block(&next, &weak, &chain.genesis)
        .is_err());
    check_reads(&chain, &blocks, &certificates, 41);
    let certificate = chain.certify(&next);
    chain
        .store
        .apply_block(&next, &certificate, &chain.genesis)
        .unwrap();
    blocks.push(next);
    certificates.push(Some(certificate));
    check_reads(&chain, &blocks, &certificates, 42);
}

#[test]
fn pruning_turned_on_later_catches_up_and_turned_off_keeps_what_is_left() {
    let mut chain = Chain::new();
    let (mut b, mut c) = (vec![chain.genesis.genesis_block()], vec![None]);
    commit_empty(&chain, 30, &mut b, &mut c);
    check_reads(&chain, &b, &c, 0);

    // Each step reopens keeping `retain` bodies, commits `n` blocks and expects the bodies
    // from `from` on. Turned on, nothing goes until the next block, which prunes the whole
    // backlog; turned off, what was pruned stays pruned and nothing more goes.
    for (retain, n, from) in [(10, 0, 0), (10, 1, 22), (0, 5, 22), (10, 1, 28)] {
        chain.reopen_retaining(retain);
        commit_empty(&chain, n, &mut b, &mut c);
        check_reads(&chain, &b, &c, from);
    }
}

#[test]
fn a_file_written_before_the_headers_table_gets_it_when_opened() {
    let mut chain = Chain::new();
    let (mut blocks, mut certificates) = (vec![chain.genesis.genesis_block()], vec![None]);
    commit_empty(&chain, 5, &mut blocks, &mut certificates);
    // What an older version left: the same file without `headers`.
    let placeholder = Store::open(&chain.dir.path().join("elsewhere.redb")).unwrap();
    drop(std::mem::replace(&mut chain.store, placeholder));
    {
        let db = redb::Database::create(chain.path()).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn
            .delete_table(redb::TableDefinition::<u64, &[u8]>::new("headers"))
            .unwrap());
        txn.commit().unwrap();
    }
    chain.reopen_retaining(10);
    check_reads(&chain, &blocks, &certificates, 0);
    // And it prunes from there on.
    commit_empty(&chain, 10, &mut blocks, &mut certificates);
    check_reads(&chain, &blocks, &certificates, 6);
}

#[test]
fn the_file_stops_growing_with_the_bodies_once_the_window_is_full() {
    // 500 blocks of ~18 KB (80 transfers' inputs and outputs each) keeping 10: about 9 MB of
    // blocks through a window of 180 KB. (The state commitment makes each block cost ~60 ms
    // in a debug build, hence not more.)
    const WARM_UP: usize = 2;
    let g = grow(10, 10, 50);
    eprintln!(
        "retain 10, after each 50 blocks: file {:?}, pages in use {:?}, block bytes {:?}",
        g.file, g.used, g.bodies
    );
    let bodies_since: u64 = g.bodies[WARM_UP..].iter().sum();
    let used_growth = g.used.last().unwrap() - g.used[WARM_UP - 1];
    // What is never pruned still grows: per height a header, a certificate, a validator set,
    // the hash indexes, and the transaction index and the validators' reward outputs (state,
    // not body), ~2.6 KB here, against ~18 KB of body that goes again. Without pruning the
    // growth would exceed the block bytes applied.
    assert!(
        used_growth <= bodies_since / 5,
        "pages in use grew by {used_growth} bytes while {bodies_since} bytes of blocks were \
         applied: {:?}",
        g.used
    );
    // The file grows in regions (doubling): at most one more after the warm-up, and it ends
    // far below the blocks applied.
    let (warm, last) = (g.file[WARM_UP - 1], *g.file.last().unwrap());
    assert!(
        last <= 2 * warm,
        "file grew from {warm} to {last}: {:?}",
        g.file
    );
    assert!(last < g.bodies.iter().sum::<u64>() / 3, "{:?}", g.file);
}
