//! A small real chain for the integration tests: four validators, a funded wallet, a redb
//! file in a temporary directory, and certificates signed by the real keys.

// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

pub mod growth;

use std::path::PathBuf;
use tempfile::TempDir;
use timecoin_ledger::{
    full_tx_root, reward_outpoint, rewards_root, tx_root, Block, Genesis, GenesisValidator,
    OutPoint, Store, StoreError, Transaction, TxOutput,
};
use timecoin_types::{Address, Amount, Certificate, Keypair, Vote, VoteKind, COIN};

pub const CHAIN: &str = "testchain";
/// The chain's minimum fee rate, base units per byte.
pub const MIN_FEE_PER_BYTE: Amount = 1;
/// The fee the tests' transactions pay: above the minimum for any of them (all are under
/// 1,000 bytes).
pub const MIN_FEE: Amount = 1_000;
pub const ALLOCATIONS: usize = 6;
pub const ALLOCATION: Amount = 1_000 * COIN;
pub const UNBONDING_BLOCKS: u64 = 3;

pub struct Chain {
    pub dir: TempDir,
    pub store: Store,
    pub genesis: Genesis,
    pub validators: Vec<Keypair>,
    pub wallet: Keypair,
}

pub fn validator_keys() -> Vec<Keypair> {
    (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect()
}

pub fn wallet_key() -> Keypair {
    Keypair::from_seed([100; 32])
}

pub fn address(key: &Keypair) -> Address {
    Address::of(&key.public())
}

pub fn genesis() -> Genesis {
    let validators = validator_keys();
    let wallet = wallet_key();
    // Rewards are paid away from the validators' own keys, so tests can tell them apart.
    let members = validators
        .iter()
        .enumerate()
        .map(|(i, k)| GenesisValidator {
            reward_address: Address::of(&Keypair::from_seed([50 + i as u8; 32]).public()),
            ..GenesisValidator::new(format!("v{i}"), k.public(), (i as u64 + 1) * 10 * COIN)
        })
        .collect();
    let funds = TxOutput {
        address: address(&wallet),
        amount: ALLOCATION,
    };
    Genesis {
        min_fee_per_byte: MIN_FEE_PER_BYTE,
        unbonding_blocks: UNBONDING_BLOCKS,
        ..Genesis::new(
            CHAIN,
            1_700_000_000_000,
            1_000,
            members,
            vec![funds; ALLOCATIONS],
        )
    }
}

impl Chain {
    pub fn new() -> Chain {
        Chain::with_genesis(genesis())
    }

    pub fn with_genesis(genesis: Genesis) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("chain.redb")).unwrap();
        store.init_genesis(&genesis).unwrap();
        Chain {
            dir,
            store,
            genesis,
            validators: validator_keys(),
            wallet: wallet_key(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("chain.redb")
    }

    /// Drops the open store and opens the file again, keeping as many block bodies as before.
    pub fn reopen(&mut self) {
        self.reopen_retaining(self.store.retain_blocks());
    }

    /// Drops the open store and opens the file again, keeping the bodies of the last `blocks`
    /// heights from now on (0: all).
    pub fn reopen_retaining(&mut self, blocks: u64) {
        let placeholder = Store::open(&self.dir.path().join("other.redb")).unwrap();
        drop(std::mem::replace(&mut self.store, placeholder));
        self.store = Store::open(&self.path()).unwrap().retaining(blocks);
    }

    pub fn height(&self) -> u64 {
        self.store.tip().unwrap().0
    }

    /// Genesis allocation `i`, owned by the wallet.
    pub fn allocation(&self, i: u32) -> OutPoint {
        reward_outpoint(0, i)
    }

    /// A transaction spending `from` (worth `value`, owned by `key`) paying `amount` to `to`,
    /// `fee` to the block, and the rest back to `key`.
    pub fn pay(
        &self,
        from: OutPoint,
        key: &Keypair,
        value: Amount,
        to: Address,
        amount: Amount,
        fee: Amount,
    ) -> Transaction {
        let mut outputs = vec![TxOutput {
            address: to,
            amount,
        }];
        let change = value - amount - fee;
        if change > 0 {
            outputs.push(TxOutput {
                address: Address::of(&key.public()),
                amount: change,
            });
        }
        Transaction::build_signed(CHAIN, vec![(from, key)], outputs)
    }

    /// The wallet paying `amount` from allocation `i` to `to` with the minimum fee.
    pub fn spend_allocation(&self, i: u32, to: Address, amount: Amount) -> Transaction {
        self.pay(
            self.allocation(i),
            &self.wallet,
            ALLOCATION,
            to,
            amount,
            MIN_FEE,
        )
    }

    /// The clock of a node at the start of the next height's slot, when blocks for it are
    /// built and checked.
    pub fn now(&self) -> u64 {
        self.genesis.slot_time_ms(self.height() + 1)
    }

    /// The block the round-0 proposer of the next height would build at the slot's start.
    pub fn build(&self, txs: Vec<Transaction>) -> Block {
        self.build_at(txs, self.now()).unwrap()
    }

    /// The block the round-0 proposer of the next height builds when its clock says
    /// `now_ms`.
    pub fn build_at(&self, txs: Vec<Transaction>, now_ms: u64) -> Result<Block, StoreError> {
        let height = self.height() + 1;
        let proposer = self
            .store
            .validator_set(height)
            .unwrap()
            .proposer(height, 0)
            .public_key;
        self.store
            .build_block(&self.genesis, 0, proposer, now_ms, txs)
    }

    /// A certificate with precommits from every validator.
    /// A certificate of every key in `validators` that is a member of the block's set (all of
    /// them for a block of another store, whose set this chain's store does not know).
    pub fn certify(&self, block: &Block) -> Certificate {
        let Ok(set) = self.store.validator_set(block.header.height) else {
            return self.certify_by(block, &self.validators);
        };
        let members: Vec<Keypair> = self
            .validators
            .iter()
            .filter(|k| set.get(&k.public()).is_some())
            .cloned()
            .collect();
        self.certify_by(block, &members)
    }

    pub fn certify_by(&self, block: &Block, signers: &[Keypair]) -> Certificate {
        let (height, round, hash) = (block.header.height, block.header.round, block.hash());
        let votes: Vec<Vote> = signers
            .iter()
            .map(|k| Vote::sign(CHAIN, k, VoteKind::Precommit, height, round, Some(hash)))
            .collect();
        Certificate::from_votes(height, round, hash, &votes)
    }

    /// Applies `block` with a certificate from every validator; once applied, the state the
    /// header commits to must be the stored state recomputed from scratch.
    pub fn apply_certified(&self, block: &Block) -> Result<(), StoreError> {
        self.store
            .apply_block(block, &self.certify(block), &self.genesis)?;
        let state = self.store.recompute_state()?;
        assert_eq!(
            block.header.state_root,
            state.root(),
            "incremental state = full state"
        );
        Ok(())
    }

    /// Builds, certifies and applies the next block.
    pub fn commit(&self, txs: Vec<Transaction>) -> Block {
        let block = self.build(txs);
        self.apply_certified(&block).unwrap();
        block
    }
}

/// Recomputes the Merkle roots after a test edited a block's body.
pub fn reseal(block: &mut Block) {
    block.header.tx_root = tx_root(&block.transactions);
    block.header.full_tx_root = full_tx_root(&block.transactions);
    block.header.rewards_root = rewards_root(&block.rewards);
}
