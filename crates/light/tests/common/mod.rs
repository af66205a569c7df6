//! A synthetic finalized chain for the light client's tests and bench: real keys, real
//! certificates, headers built as the node builds them, and a validator-set change every
//! `change_every` heights (one member replaced by a fresh key).

use timecoin_chain::{
    full_tx_root, rewards_root, tx_root, BlockHeader, Genesis, GenesisValidator, MerklePath,
    OutPoint, Transaction, TxOutput,
};
use timecoin_light::{Bundle, LightBlock, TxInclusion, BUNDLE_FORMAT};
use timecoin_types::{
    Address, Certificate, Hash256, Keypair, Validator, ValidatorSet, Vote, VoteKind, COIN,
};

/// The chain id of every fixture chain.
pub const CHAIN: &str = "light-test";

/// A finalized chain: the genesis, every light block from height 1, and the transaction in
/// the last block.
pub struct Chain {
    pub genesis: Genesis,
    pub blocks: Vec<LightBlock>,
    pub keys: Vec<Keypair>,
    pub transaction: Transaction,
    pub last_transactions: Vec<Transaction>,
}

fn member(key: &Keypair) -> Validator {
    Validator {
        public_key: key.public(),
        weight: 10 * COIN,
        reward_address: Address::of(&key.public()),
    }
}

fn keypair(n: u32) -> Keypair {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    Keypair::from_seed(seed)
}

/// Signs `header` with every member of `set` whose key is in `keys`.
pub fn certify(header: &BlockHeader, set: &ValidatorSet, keys: &[Keypair]) -> Certificate {
    let hash = header.hash();
    let votes: Vec<Vote> = keys
        .iter()
        .filter(|k| set.get(&k.public()).is_some())
        .map(|k| {
            Vote::sign(
                CHAIN,
                k,
                VoteKind::Precommit,
                header.height,
                header.round,
                Some(hash),
            )
        })
        .collect();
    Certificate::from_votes(header.height, header.round, hash, &votes)
}

/// A chain of `height` blocks over `members` validators whose set changes every
/// `change_every` heights.
pub fn chain(members: u32, height: u64, change_every: u64) -> Chain {
    let mut keys: Vec<Keypair> = (0..members).map(keypair).collect();
    let first_set = keys
        .iter()
        .enumerate()
        .map(|(i, k)| GenesisValidator::new(format!("v{i}"), k.public(), 10 * COIN))
        .collect();
    let genesis = Genesis::new(CHAIN, 1_700_000_000_000, 1000, first_set, Vec::new());
    let spender = keypair(0);
    let transaction = Transaction::build_signed(
        CHAIN,
        vec![(
            OutPoint {
                txid: Hash256::digest(b"coin"),
                index: 0,
            },
            &spender,
        )],
        vec![TxOutput {
            address: Address([1; 20]),
            amount: 5,
        }],
    );
    let others: Vec<Transaction> = (0..4u64)
        .map(|i| {
            let mut tx = transaction.clone();
            tx.outputs[0].amount = 6 + i;
            tx
        })
        .collect();
    let last_transactions = [
        &others[..2],
        std::slice::from_ref(&transaction),
        &others[2..],
    ]
    .concat();

    let mut set = genesis.validator_set();
    let mut next = set.clone();
    let mut prev_hash = genesis.genesis_block().hash();
    let mut blocks = Vec::new();
    let mut fresh = members;
    for h in 1..=height {
        // `set` votes on h and `next` on h + 1; block h fixes `after`, the set of h + 2.
        let after = if h % change_every == 0 {
            let mut members: Vec<Validator> = next.validators().to_vec();
            members.remove(0);
            keys.push(keypair(fresh));
            members.push(member(&keys[keys.len() - 1]));
            fresh += 1;
            ValidatorSet::new(members).unwrap()
        } else {
            next.clone()
        };
        let body: &[Transaction] = if h == height { &last_transactions } else { &[] };
        let header = BlockHeader {
            version: 1,
            chain_id: CHAIN.into(),
            height: h,
            round: (h % 3) as u32,
            prev_hash,
            proposer: set.proposer(h, 0).public_key,
            time_ms: genesis.slot_time_ms(h),
            tx_root: tx_root(body),
            full_tx_root: full_tx_root(body),
            rewards_root: rewards_root(&[]),
            validator_set_hash: set.hash(),
            next_validator_set_hash: next.hash(),
            state_root: Hash256::digest(&h.to_be_bytes()),
        };
        prev_hash = header.hash();
        blocks.push(LightBlock {
            certificate: certify(&header, &set, &keys),
            header,
            validators: set.clone(),
            next_validators: next.clone(),
        });
        (set, next) = (next, after);
    }
    Chain {
        genesis,
        blocks,
        keys,
        transaction,
        last_transactions,
    }
}

impl Chain {
    /// What `timed proof export --height <last>` writes: every set hand-over, then the target,
    /// with the transaction's path.
    pub fn bundle(&self) -> Bundle {
        let (target, walk) = self.blocks.split_last().unwrap();
        let mut blocks: Vec<LightBlock> =
            walk.iter().filter(|b| b.changes_set()).cloned().collect();
        blocks.push(target.clone());
        Bundle {
            format: BUNDLE_FORMAT,
            chain_id: CHAIN.into(),
            trusted_height: None,
            blocks,
            transaction: Some(TxInclusion {
                transaction: self.transaction.clone(),
                path: MerklePath::of_transaction(&self.last_transactions, 2).unwrap(),
            }),
        }
    }
}
