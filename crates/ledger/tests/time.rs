//! Block times: never before the height's slot (anywhere), never further ahead of the
//! receiver's clock than the allowed drift (proposals only, not finalized blocks), and block
//! building dates its blocks within both.

mod common;

use common::*;
use timecoin_ledger::{BlockError, StoreError, MAX_CLOCK_DRIFT_MS};

#[test]
fn a_block_dated_before_its_slot_is_refused_everywhere() {
    let chain = Chain::new();
    chain.commit(vec![]);
    let slot_ms = chain.now();
    let mut block = chain.build(vec![]);
    assert_eq!(block.header.time_ms, slot_ms);
    // Still after its parent, dated at the previous slot's start.
    block.header.time_ms = slot_ms - 1;
    assert!(block.header.time_ms > chain.store.block(1).unwrap().unwrap().header.time_ms);
    let error = BlockError::TimeBeforeSlot {
        time_ms: slot_ms - 1,
        slot_ms,
    };
    assert!(!error.is_local());
    assert_eq!(
        chain.store.validate_block(&block, &chain.genesis, slot_ms),
        Err(error.clone())
    );
    // A finalized block is held to its slot too.
    assert!(matches!(
        chain.apply_certified(&block),
        Err(StoreError::InvalidBlock(e)) if e == error
    ));
    assert_eq!(chain.height(), 1);
}

#[test]
fn a_proposal_dated_ahead_of_the_clock_is_refused_but_a_final_one_is_applied() {
    let chain = Chain::new();
    // Proposed by a node whose clock is a minute ahead of ours.
    let block = chain.build_at(vec![], chain.now() + 60_000).unwrap();
    let time_ms = block.header.time_ms;
    assert_eq!(time_ms, chain.now() + 60_000);
    let validate = |now_ms| chain.store.validate_block(&block, &chain.genesis, now_ms);
    assert_eq!(validate(time_ms - MAX_CLOCK_DRIFT_MS), Ok(()));
    let error = BlockError::TimeInFuture {
        time_ms,
        now_ms: time_ms - MAX_CLOCK_DRIFT_MS - 1,
        drift: MAX_CLOCK_DRIFT_MS,
    };
    assert!(error.is_local());
    assert_eq!(validate(time_ms - MAX_CLOCK_DRIFT_MS - 1), Err(error));
    assert_eq!(validate(u64::MAX), Ok(()));
    // A quorum finalized it: a node catching up (or with a slow clock) applies it.
    chain.apply_certified(&block).unwrap();
    assert_eq!(chain.height(), 1);
}

#[test]
fn building_dates_the_block_within_the_slot_and_the_drift() {
    let chain = Chain::new();
    let slot_ms = chain.now();
    // A clock a little behind the slot: the time is raised to the slot's start, which the
    // builder's own validation accepts.
    let early = slot_ms - MAX_CLOCK_DRIFT_MS / 2;
    let block = chain.build_at(vec![], early).unwrap();
    assert_eq!(block.header.time_ms, slot_ms);
    assert_eq!(
        chain.store.validate_block(&block, &chain.genesis, early),
        Ok(())
    );
    let edge = chain
        .build_at(vec![], slot_ms - MAX_CLOCK_DRIFT_MS)
        .unwrap();
    assert_eq!(edge.header.time_ms, slot_ms);
    // Too far behind: any block would be dated beyond the drift, so none is built.
    let behind = slot_ms - MAX_CLOCK_DRIFT_MS - 1;
    assert!(matches!(
        chain.build_at(vec![], behind),
        Err(StoreError::InvalidBlock(BlockError::TimeInFuture {
            time_ms,
            now_ms,
            drift: MAX_CLOCK_DRIFT_MS,
        })) if time_ms == slot_ms && now_ms == behind
    ));
    // A clock past the slot's start is the block's time.
    let late = slot_ms + 5_000;
    let block = chain.build_at(vec![], late).unwrap();
    assert_eq!(block.header.time_ms, late);
    chain.apply_certified(&block).unwrap();
    // The next block is raised to its parent's time, later than its own slot's start.
    assert!(chain.now() < late);
    let next = chain.build_at(vec![], chain.now()).unwrap();
    assert_eq!(next.header.time_ms, late);
    assert_eq!(
        chain
            .store
            .validate_block(&next, &chain.genesis, chain.now()),
        Ok(())
    );
}

#[test]
fn back_to_back_chains_have_one_slot_start_for_every_height() {
    let chain = Chain::with_genesis(timecoin_ledger::Genesis {
        block_interval_ms: 0,
        ..genesis()
    });
    let start = chain.genesis.genesis_time_ms;
    for _ in 0..3 {
        let block = chain.build_at(vec![], start).unwrap();
        assert_eq!(block.header.time_ms, start);
        assert_eq!(
            chain.store.validate_block(&block, &chain.genesis, start),
            Ok(())
        );
        chain.apply_certified(&block).unwrap();
    }
    assert_eq!(chain.height(), 3);
}
