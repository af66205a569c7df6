//! Tests of the `sync` module.

use super::*;
use crate::testnet;
use serve::read_blocks;
use std::collections::HashSet;
use timecoin_ledger::Block;
use timecoin_types::{Address, Certificate, Keypair, Vote, VoteKind};

struct Chain {
    _dir: tempfile::TempDir,
    store: Store,
    genesis: Genesis,
    keys: Vec<Keypair>,
}

fn chain() -> Chain {
    let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
    // A chain as `timed testnet` generates it.
    let validators = keys
        .iter()
        .enumerate()
        .map(|(i, k)| testnet::genesis_validator(format!("v{i}"), k.public()))
        .collect();
    let faucet = Address::of(&keys[0].public());
    let genesis = testnet::genesis(
        "sync-test".into(),
        1_700_000_000_000,
        1000,
        validators,
        faucet,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.redb")).unwrap();
    store.init_genesis(&genesis).unwrap();
    Chain {
        _dir: dir,
        store,
        genesis,
        keys,
    }
}

impl Chain {
    fn next_block(&self) -> Block {
        let (tip, _) = self.store.tip().unwrap();
        let set = self.store.validator_set(tip + 1).unwrap();
        let proposer = set.proposer(tip + 1, 0).public_key;
        let time = self.genesis.slot_time_ms(tip + 1);
        self.store
            .build_block(&self.genesis, 0, proposer, time, Vec::new())
            .unwrap()
    }

    fn certify(&self, block: &Block, signers: usize) -> Certificate {
        let votes: Vec<Vote> = self.keys[..signers]
            .iter()
            .map(|k| {
                let hash = Some(block.hash());
                Vote::sign(
                    "sync-test",
                    k,
                    VoteKind::Precommit,
                    block.header.height,
                    0,
                    hash,
                )
            })
            .collect();
        Certificate::from_votes(block.header.height, 0, block.hash(), &votes)
    }
}

#[test]
fn only_a_fully_verified_next_block_is_applied() {
    let c = chain();
    let apply = |block: &Block, certificate: Certificate| {
        let item = SyncedBlock {
            block: block.clone(),
            certificate,
        };
        check_and_apply(&c.store, &c.genesis, &item)
    };
    let first = c.next_block();

    let weak = apply(&first, c.certify(&first, 2)).unwrap_err();
    assert!(weak.is_invalid_everywhere(), "{weak}");
    assert!(weak.to_string().contains("below two thirds"), "{weak}");
    let mut other = first.clone();
    other.header.time_ms += 1;
    let misdirected = apply(&first, c.certify(&other, 3)).unwrap_err();
    assert!(misdirected.is_invalid_everywhere(), "{misdirected}");
    assert!(
        misdirected.to_string().contains("certificate"),
        "{misdirected}"
    );
    let mut forged = first.clone();
    forged.rewards[0].amount += 1;
    let bad_rewards = apply(&forged, c.certify(&forged, 3)).unwrap_err();
    assert!(!bad_rewards.to_string().is_empty());
    assert_eq!(c.store.tip().unwrap().0, 0, "nothing applied");

    apply(&first, c.certify(&first, 3)).unwrap();
    assert_eq!(c.store.tip().unwrap(), (1, first.hash()));
    // Certified, but no longer the next block here: our state, not the peer's fault.
    let again = apply(&first, c.certify(&first, 4)).unwrap_err();
    assert!(!again.is_invalid_everywhere(), "{again}");
    assert_eq!(c.store.tip().unwrap().0, 1);
}

#[test]
fn a_pruned_store_serves_its_window_and_nothing_from_below_it() {
    let mut c = chain();
    let path = c._dir.path().join("db.redb");
    let placeholder = Store::open(&c._dir.path().join("other.redb")).unwrap();
    drop(std::mem::replace(&mut c.store, placeholder));
    c.store = Store::open(&path).unwrap().retaining(10);
    for _ in 0..30 {
        let block = c.next_block();
        let certificate = c.certify(&block, 3);
        c.store
            .apply_block(&block, &certificate, &c.genesis)
            .unwrap();
    }
    assert_eq!(c.store.pruned_below().unwrap(), 21);
    let heights = |from: u64, count: u32| match read_blocks(&c.store, from, count) {
        SyncResponse::Blocks(blocks) => blocks
            .iter()
            .map(|b| b.block.header.height)
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    // From below the window: none (never blocks that start elsewhere), so the requester
    // asks another peer.
    assert_eq!(heights(1, 100), Vec::<u64>::new());
    assert_eq!(heights(20, 5), Vec::<u64>::new());
    assert_eq!(heights(21, 3), vec![21, 22, 23]);
    assert_eq!(heights(25, 100), (25..=30).collect::<Vec<_>>());
    assert_eq!(heights(31, 10), Vec::<u64>::new());
}

#[test]
fn backoff_doubles_per_failure_up_to_its_bound_and_a_success_clears_it() {
    let mut backoff = Backoff::default();
    let peer = PeerId::random();
    let t0 = Instant::now();
    assert!(!backoff.is_waiting(&peer, t0));
    let delays: Vec<u64> = (0..12)
        .map(|_| backoff.failed(peer, t0).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(backoff.failures(&peer), 12);
    assert!(backoff.is_waiting(&peer, t0 + Duration::from_secs(299)));
    assert!(!backoff.is_waiting(&peer, t0 + Duration::from_secs(300)));
    // Many more failures never overflow.
    for _ in 0..100 {
        assert_eq!(backoff.failed(peer, t0), BACKOFF_MAX);
    }
    backoff.succeeded(&peer);
    assert!(!backoff.is_waiting(&peer, t0));
    assert_eq!(backoff.failures(&peer), 0);
    assert_eq!(
        backoff.failed(peer, t0),
        BACKOFF_BASE,
        "a success starts over"
    );
}

#[test]
fn backoff_is_per_peer_and_bounded_in_peers() {
    let mut backoff = Backoff::default();
    let t0 = Instant::now();
    let (liar, honest) = (PeerId::random(), PeerId::random());
    backoff.failed(liar, t0);
    backoff.failed(liar, t0);
    assert!(backoff.is_waiting(&liar, t0 + Duration::from_secs(1)));
    assert!(!backoff.is_waiting(&honest, t0));
    // The oldest-ending entries make room for new ones; the count stays bounded.
    for i in 0..2 * BACKOFF_PEERS {
        backoff.failed(PeerId::random(), t0 + Duration::from_millis(i as u64));
    }
    assert_eq!(backoff.peers.len(), BACKOFF_PEERS);
    assert!(
        !backoff.is_waiting(&liar, t0),
        "the earliest entry was forgotten"
    );
}

#[test]
fn the_peer_with_fewest_failures_is_asked_rotating_among_equals() {
    let mut backoff = Backoff::default();
    let t0 = Instant::now();
    let liar = PeerId::random();
    let (a, b) = (PeerId::random(), PeerId::random());
    let mut ahead = vec![(liar, 1_000_000), (a, 10), (b, 12)];
    let picks: HashSet<PeerId> = (0..4)
        .filter_map(|turn| pick(&mut ahead, &backoff, turn))
        .collect();
    assert_eq!(picks.len(), 3, "without failures every peer gets a turn");
    backoff.failed(liar, t0);
    for turn in 0..6 {
        assert_ne!(pick(&mut ahead, &backoff, turn), Some(liar));
    }
    // Once only the liar is ahead, it is asked again (when its backoff has passed).
    let mut only_liar = vec![(liar, 1_000_000)];
    assert_eq!(pick(&mut only_liar, &backoff, 0), Some(liar));
    assert_eq!(pick(&mut Vec::new(), &backoff, 0), None);
}
