//! The genesis file: the chain's parameters, first validator set and initial allocations.

use crate::block::{full_tx_root, rewards_root, tx_root, Block, BlockHeader};
use crate::state::StateHash;
use crate::tx::{check_amounts, Transaction, TxOutput};
use crate::MAX_BLOCK_BYTES;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use timecoin_types::{
    codec, Address, Amount, Hash256, PublicKey, Validator, ValidatorSet, ValidatorSetError,
    MAX_CHAIN_ID_LEN,
};

/// A validator listed in the genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// Human-readable name (not part of consensus beyond the genesis hash).
    pub name: String,
    /// Consensus key.
    pub public_key: PublicKey,
    /// Locked collateral in base units; it is the validator's weight.
    pub collateral: Amount,
    /// Where its rewards are paid.
    pub reward_address: Address,
}

impl GenesisValidator {
    /// A validator named `name` with consensus key `key` and `collateral`, its rewards paid to
    /// its key's own address.
    pub fn new(name: impl Into<String>, key: PublicKey, collateral: Amount) -> GenesisValidator {
        GenesisValidator {
            name: name.into(),
            public_key: key,
            collateral,
            reward_address: Address::of(&key),
        }
    }
}

/// The genesis: everything a node needs to start the chain, as stored in `genesis.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Network name; part of every signature.
    pub chain_id: String,
    /// Start of slot 0, milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// Slot length in milliseconds; 0 proposes each height as soon as the previous one is
    /// final (back-to-back blocks, for devnets and benchmarks).
    pub block_interval_ms: u64,
    /// The first validator set.
    pub validators: Vec<GenesisValidator>,
    /// Coins that exist at height 0.
    pub allocations: Vec<TxOutput>,
    /// Smallest fee rate a transaction must pay, in base units per byte of its canonical
    /// encoding ([`Transaction::encoded_len`]); see [`Genesis::min_fee_for`]. Charging by
    /// size prices what a transaction costs every node (bandwidth, block space, storage), so
    /// a large transaction cannot fill blocks for the fee of a small one.
    pub min_fee_per_byte: Amount,
    /// Smallest amount, in base units, a transaction output may carry (staking outputs
    /// included; block rewards and allocations are not transaction outputs). Files written
    /// before the field existed get [`DEFAULT_MIN_OUTPUT`]; the default is not encoded, so
    /// their genesis hash is unchanged.
    #[serde(
        default = "default_min_output",
        skip_serializing_if = "is_default_min_output"
    )]
    pub min_output: Amount,
    /// Blocks a deregistered validator's collateral stays locked after it has left the set
    /// (it left at deregistration height + [`crate::ACTIVATION_DELAY`]). Files written before
    /// the field existed get [`DEFAULT_UNBONDING_BLOCKS`]; the default is not encoded, so
    /// their genesis hash is unchanged.
    #[serde(
        default = "default_unbonding_blocks",
        skip_serializing_if = "is_default_unbonding_blocks"
    )]
    pub unbonding_blocks: u64,
    /// Protocol upgrades every node agrees on in advance: from each `height` on, blocks follow
    /// `version` (before the first, version 1). A node whose binary does not implement a
    /// scheduled version stops before its height instead of forking. Not encoded when empty,
    /// so genesis files without upgrades keep their hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrades: Vec<Upgrade>,
}

/// One scheduled protocol upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    /// The protocol version blocks follow from `height` on.
    pub version: u32,
    /// The first height of that version.
    pub height: u64,
}

/// Unbonding delay of a genesis that does not set one.
pub const DEFAULT_UNBONDING_BLOCKS: u64 = 10;

fn default_unbonding_blocks() -> u64 {
    DEFAULT_UNBONDING_BLOCKS
}

fn is_default_unbonding_blocks(blocks: &u64) -> bool {
    *blocks == DEFAULT_UNBONDING_BLOCKS
}

/// Smallest output of a genesis that does not set one: 10,000 base units (0.0001 TIME).
///
/// Every unspent output costs every node a UTXO entry and an address-index entry until it is
/// spent, and spending it takes an input of about 175 encoded bytes, paid at the fee rate.
/// An output worth less than that is dust nobody will ever spend, kept by every node forever;
/// without a floor a hostile sender could add thousands of one-base-unit outputs to every
/// node's UTXO set per block for the price of their bytes. 10,000 base units is negligible
/// as money, yet stays worth spending up to a fee rate of about 57 base units per byte.
pub const DEFAULT_MIN_OUTPUT: Amount = 10_000;

fn default_min_output() -> Amount {
    DEFAULT_MIN_OUTPUT
}

fn is_default_min_output(amount: &Amount) -> bool {
    *amount == DEFAULT_MIN_OUTPUT
}

/// Why a genesis could not be loaded, saved or accepted.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The file could not be read or written.
    #[error("genesis file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file is not valid genesis JSON.
    #[error("genesis file {path} is not valid genesis JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        source: serde_json::Error,
    },
    /// An upgrade that does not raise the version at a later height than the one before.
    #[error("upgrade to version {} at height {} must raise the version, at a later height than the previous upgrade (and after height 0)", .0.version, .0.height)]
    Upgrades(Upgrade),
    /// Chain id empty or longer than [`MAX_CHAIN_ID_LEN`] bytes.
    #[error("chain id must be 1 to {MAX_CHAIN_ID_LEN} bytes, got {0}")]
    ChainId(usize),
    /// The validators do not form a valid set.
    #[error("invalid validator set: {0}")]
    Validators(#[from] ValidatorSetError),
    /// An allocation of zero coins.
    #[error("allocation {0} is zero")]
    ZeroAllocation(usize),
    /// The allocations sum to more than `u64::MAX` base units.
    #[error("allocations overflow 64 bits of base units")]
    AllocationOverflow,
    /// The genesis block would be larger than a block may be.
    #[error("genesis block of {0} bytes exceeds the block size limit")]
    TooLarge(usize),
}

impl Genesis {
    /// A genesis with no fee floor and the default minimum output and unbonding period; set
    /// the other fields with struct update syntax.
    pub fn new(
        chain_id: impl Into<String>,
        genesis_time_ms: u64,
        block_interval_ms: u64,
        validators: Vec<GenesisValidator>,
        allocations: Vec<TxOutput>,
    ) -> Genesis {
        Genesis {
            chain_id: chain_id.into(),
            genesis_time_ms,
            block_interval_ms,
            validators,
            allocations,
            min_fee_per_byte: 0,
            min_output: DEFAULT_MIN_OUTPUT,
            unbonding_blocks: DEFAULT_UNBONDING_BLOCKS,
            upgrades: Vec::new(),
        }
    }

    /// The protocol version blocks of `height` follow under the upgrade schedule.
    pub fn version_at(&self, height: u64) -> u32 {
        self.upgrades
            .iter()
            .rev()
            .find(|u| u.height <= height)
            .map_or(1, |u| u.version)
    }

    /// The first scheduled upgrade to a version above `supported` (the highest this binary
    /// implements), if any: the height before which such a binary must stop.
    pub fn first_unsupported(&self, supported: u32) -> Option<Upgrade> {
        self.upgrades
            .iter()
            .find(|u| u.version > supported)
            .copied()
    }

    /// Reads and validates a `genesis.json`.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Io {
            path: path.into(),
            source,
        })?;
        let genesis: Genesis =
            serde_json::from_str(&text).map_err(|source| GenesisError::Json {
                path: path.into(),
                source,
            })?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Writes the genesis as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), GenesisError> {
        let io = |source| GenesisError::Io {
            path: path.into(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        text.push('\n');
        std::fs::write(path, text).map_err(io)
    }

    /// Checks everything [`Genesis::validator_set`] and [`Genesis::genesis_block`] rely on.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id.is_empty() || self.chain_id.len() > MAX_CHAIN_ID_LEN {
            return Err(GenesisError::ChainId(self.chain_id.len()));
        }
        self.try_validator_set()?;
        let mut last = Upgrade {
            version: 1,
            height: 0,
        };
        for upgrade in &self.upgrades {
            if upgrade.version <= last.version || upgrade.height <= last.height {
                return Err(GenesisError::Upgrades(*upgrade));
            }
            last = *upgrade;
        }
        check_amounts(
            &self.allocations,
            GenesisError::ZeroAllocation,
            GenesisError::AllocationOverflow,
        )?;
        let size = self.genesis_block().encoded_len();
        if size > MAX_BLOCK_BYTES {
            return Err(GenesisError::TooLarge(size));
        }
        Ok(())
    }

    fn try_validator_set(&self) -> Result<ValidatorSet, ValidatorSetError> {
        ValidatorSet::new(
            self.validators
                .iter()
                .map(|v| Validator {
                    public_key: v.public_key,
                    weight: v.collateral,
                    reward_address: v.reward_address,
                })
                .collect(),
        )
    }

    /// The validator set of the first heights (weight = collateral).
    ///
    /// # Panics
    /// If the validators do not form a valid set; [`Genesis::load`] and
    /// [`Genesis::validate`] rule that out.
    pub fn validator_set(&self) -> ValidatorSet {
        self.try_validator_set()
            .expect("genesis validators were checked by Genesis::validate")
    }

    /// The block at height 0: no transactions, the allocations as its outputs (at
    /// [`crate::reward_outpoint`]`(0, i)`), proposed by the set's round-0 proposer.
    ///
    /// # Panics
    /// As [`Genesis::validator_set`].
    pub fn genesis_block(&self) -> Block {
        let set = self.validator_set();
        Block {
            header: BlockHeader {
                version: self.version_at(0),
                chain_id: self.chain_id.clone(),
                height: 0,
                round: 0,
                prev_hash: Hash256::ZERO,
                proposer: set.proposer(0, 0).public_key,
                time_ms: self.genesis_time_ms,
                tx_root: tx_root(&[]),
                full_tx_root: full_tx_root(&[]),
                rewards_root: rewards_root(&self.allocations),
                // The genesis set votes on heights 1 and 2.
                validator_set_hash: set.hash(),
                next_validator_set_hash: set.hash(),
                state_root: self.state().root(),
            },
            transactions: Vec::new(),
            rewards: self.allocations.clone(),
        }
    }

    /// The state at height 0: the allocations, unspent, and no stake records.
    pub fn state(&self) -> StateHash {
        let mut state = StateHash::empty();
        for (i, output) in self.allocations.iter().enumerate() {
            state.insert_output(&crate::reward_outpoint(0, i as u32), output);
        }
        state
    }

    /// The smallest fee `tx` may pay: [`Genesis::min_fee_per_byte`] × its encoded size,
    /// saturating at `u64::MAX` (which no fee can exceed, so an absurd rate refuses every
    /// transaction instead of wrapping around to a cheap one).
    pub fn min_fee_for(&self, tx: &Transaction) -> Amount {
        let size = u64::try_from(tx.encoded_len()).unwrap_or(u64::MAX);
        self.min_fee_per_byte.saturating_mul(size)
    }

    /// Hash of the whole genesis; two nodes with equal hashes run the same chain.
    pub fn hash(&self) -> Hash256 {
        Hash256::digest_parts(&[b"timecoin/genesis/v1", &codec::encode(self)])
    }

    /// Start of the slot for `height` (TSDC): genesis time + height × interval, saturating
    /// instead of wrapping for absurd heights.
    pub fn slot_time_ms(&self, height: u64) -> u64 {
        self.genesis_time_ms
            .saturating_add(height.saturating_mul(self.block_interval_ms))
    }
}
