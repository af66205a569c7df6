//! Why a transaction or a block was rejected: one variant per rule, so that every refusal
//! (from the mempool check, block validation or apply) names its own reason, and says
//! whether it is a fact about the transaction or block alone or only about it on this node
//! ([`TxError::is_local`], [`BlockError::is_local`]).

use crate::tx::{OutPoint, TxOutput};
use crate::{MAX_BLOCK_BYTES, MAX_BLOCK_TRANSACTIONS, MAX_TX_BYTES, MAX_TX_INPUTS, MAX_TX_OUTPUTS};
use timecoin_types::{Address, Amount, Hash256, PublicKey};

/// Why a transaction was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// No inputs.
    #[error("transaction has no inputs")]
    NoInputs,
    /// No outputs.
    #[error("transaction has no outputs")]
    NoOutputs,
    /// More than [`MAX_TX_INPUTS`] inputs.
    #[error("transaction has {0} inputs, at most {MAX_TX_INPUTS} allowed")]
    TooManyInputs(usize),
    /// More than [`MAX_TX_OUTPUTS`] outputs.
    #[error("transaction has {0} outputs, at most {MAX_TX_OUTPUTS} allowed")]
    TooManyOutputs(usize),
    /// Encoded size over [`MAX_TX_BYTES`].
    #[error("transaction is {0} bytes, at most {MAX_TX_BYTES} allowed")]
    TooLarge(usize),
    /// An output of zero coins.
    #[error("output {0} has zero amount")]
    ZeroOutput(usize),
    /// The outputs sum to more than `u64::MAX`.
    #[error("output amounts overflow")]
    OutputOverflow,
    /// The spent outputs sum to more than `u64::MAX`.
    #[error("input amounts overflow")]
    InputOverflow,
    /// The same output spent twice by this transaction.
    #[error("input {0} is spent twice in the transaction")]
    DuplicateInput(OutPoint),
    /// An input's signature does not verify for this chain.
    #[error("signature of input {0} does not verify")]
    BadSignature(usize),
    /// The spent output does not exist: never created or already spent.
    #[error("input {0} is unknown or already spent")]
    MissingInput(OutPoint),
    /// The input's key does not own the spent output.
    #[error("input {index}: key's address {key_address} does not own output of {owner}")]
    WrongOwner {
        /// Input position.
        index: usize,
        /// Address of the input's public key.
        key_address: Address,
        /// Address the spent output is locked to.
        owner: Address,
    },
    /// The outputs are worth more than the inputs.
    #[error("outputs ({outputs}) exceed inputs ({inputs})")]
    InsufficientFunds {
        /// Sum of spent outputs.
        inputs: Amount,
        /// Sum of new outputs.
        outputs: Amount,
    },
    /// An output carries less than the genesis's [`crate::Genesis::min_output`].
    #[error("output {index} of {amount} is below the minimum output {min}")]
    OutputTooSmall {
        /// Output position.
        index: usize,
        /// Its amount.
        amount: Amount,
        /// The genesis's minimum.
        min: Amount,
    },
    /// The fee is below the chain's minimum for the transaction's size
    /// ([`crate::Genesis::min_fee_for`]).
    #[error("fee {fee} is below the minimum {min} for {size} bytes")]
    FeeTooLow {
        /// Fee paid.
        fee: Amount,
        /// Minimum fee for the transaction's size.
        min: Amount,
        /// Encoded size of the transaction in bytes.
        size: usize,
    },
    /// A registration locks less than [`crate::MIN_COLLATERAL`] in its staking output.
    #[error("collateral {amount} is below the minimum {min}")]
    CollateralTooLow {
        /// Amount of the staking output.
        amount: Amount,
        /// [`crate::MIN_COLLATERAL`].
        min: Amount,
    },
    /// A registration without a proof of possession of the consensus key.
    #[error("registration carries no proof of possession of the consensus key")]
    MissingPossessionProof,
    /// The proof of possession is not the consensus key's signature over this chain, owner,
    /// reward address and first input.
    #[error("proof of possession of consensus key {0} does not verify")]
    BadPossessionProof(PublicKey),
    /// The consensus key is already a member (or entering) of the next heights' set.
    #[error("consensus key {0} is already registered or pending registration")]
    KeyAlreadyRegistered(PublicKey),
    /// The set's total weight would no longer fit in 64 bits (possible only with genesis
    /// collateral near the limit, which is not coin).
    #[error("registration would overflow the validator set's total weight")]
    WeightOverflow,
    /// The input spends collateral that still backs a validator.
    #[error("input {0} is collateral of an active validator; deregister it first")]
    CollateralBonded(OutPoint),
    /// The input spends collateral that is still unbonding.
    #[error("input {outpoint} is unbonding collateral, spendable from height {unlock_height}")]
    CollateralUnbonding {
        /// The staking output.
        outpoint: OutPoint,
        /// First height whose blocks may spend it.
        unlock_height: u64,
    },
    /// A deregistration names an output that is not a registered stake (genesis validators
    /// have none).
    #[error("{0} is not a registered staking output")]
    UnknownStake(OutPoint),
    /// A deregistration of a stake that is already deregistered.
    #[error("stake {0} is already deregistered")]
    AlreadyDeregistered(OutPoint),
    /// No input of the deregistration is signed by the staking output's owner.
    #[error("deregistration of {stake} is not signed by its owner {owner}")]
    NotStakeOwner {
        /// The staking output.
        stake: OutPoint,
        /// Its owner, whose signature is missing.
        owner: Address,
    },
    /// The store could not be read.
    #[error("storage error while validating: {0}")]
    Storage(String),
}

impl TxError {
    /// True if the rejection depends on the receiver's own state: the UTXO set (the fee and
    /// the input sum are only known from the spent outputs), the stake records and validator
    /// sets, or its storage. Such a transaction may be valid on another node, or later (a
    /// peer ahead of us, a spend of an output we have not seen final yet), so relaying it
    /// is no fault. False if it is invalid on every node of the chain whatever its state:
    /// its shape, size, amounts, signatures and proofs are wrong, which a peer can check
    /// before relaying. Conservative: anything that reads chain state is local.
    pub fn is_local(&self) -> bool {
        match self {
            TxError::NoInputs
            | TxError::NoOutputs
            | TxError::TooManyInputs(_)
            | TxError::TooManyOutputs(_)
            | TxError::TooLarge(_)
            | TxError::ZeroOutput(_)
            | TxError::OutputOverflow
            | TxError::OutputTooSmall { .. }
            | TxError::DuplicateInput(_)
            | TxError::BadSignature(_)
            | TxError::CollateralTooLow { .. }
            | TxError::MissingPossessionProof
            | TxError::BadPossessionProof(_) => false,
            TxError::InputOverflow
            | TxError::MissingInput(_)
            | TxError::WrongOwner { .. }
            | TxError::InsufficientFunds { .. }
            | TxError::FeeTooLow { .. }
            | TxError::KeyAlreadyRegistered(_)
            | TxError::WeightOverflow
            | TxError::CollateralBonded(_)
            | TxError::CollateralUnbonding { .. }
            | TxError::UnknownStake(_)
            | TxError::AlreadyDeregistered(_)
            | TxError::NotStakeOwner { .. }
            | TxError::Storage(_) => true,
        }
    }
}

/// Why a block was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The header names another chain.
    #[error("block is for chain {got}, expected {expected}")]
    WrongChain {
        /// Our chain id.
        expected: String,
        /// The block's.
        got: String,
    },
    /// Not the next height.
    #[error("block height {got}, expected {expected}")]
    WrongHeight {
        /// Tip + 1.
        expected: u64,
        /// The block's.
        got: u64,
    },
    /// The previous hash is not our tip.
    #[error("block's previous hash {got} is not the tip {expected}")]
    WrongPrevHash {
        /// Our tip.
        expected: Hash256,
        /// The block's.
        got: Hash256,
    },
    /// Not the proposer of the header's (height, round).
    #[error("proposer {got} is not the proposer {expected} of round {round}")]
    WrongProposer {
        /// The set's proposer for the round.
        expected: PublicKey,
        /// The header's.
        got: PublicKey,
        /// The header's round.
        round: u32,
    },
    /// The header commits to another validator set.
    #[error("validator set hash {got} does not match the height's set {expected}")]
    WrongValidatorSet {
        /// Our set's hash.
        expected: Hash256,
        /// The header's.
        got: Hash256,
    },
    /// The header commits to another set for the next height than the chain fixed.
    #[error("next validator set hash {got} does not match the next height's set {expected}")]
    WrongNextValidatorSet {
        /// The hash of the set the chain fixed for the next height.
        expected: Hash256,
        /// The header's.
        got: Hash256,
    },
    /// The header's protocol version is not the one in force at its height.
    #[error("block follows protocol version {got}, but version {expected} is in force")]
    WrongVersion {
        /// The version in force.
        expected: u32,
        /// The header's.
        got: u32,
    },
    /// The chain's upgrade schedule puts the block's height under a protocol version this
    /// binary does not implement.
    #[error("height {height} follows protocol version {version}, but this binary implements only up to {supported}: upgrade timed")]
    UnsupportedVersion {
        /// The block's height.
        height: u64,
        /// The version the schedule puts in force there.
        version: u32,
        /// The highest version this binary implements.
        supported: u32,
    },
    /// The block claims a time before the start of its height's slot
    /// ([`crate::Genesis::slot_time_ms`]).
    #[error("block time {time_ms} is before the start {slot_ms} of its slot")]
    TimeBeforeSlot {
        /// The header's time.
        time_ms: u64,
        /// Start of the slot of the header's height.
        slot_ms: u64,
    },
    /// The block claims a time further ahead of the receiver's clock than
    /// [`crate::MAX_CLOCK_DRIFT_MS`] allows (checked on proposals only, not on finalized
    /// blocks).
    #[error("block time {time_ms} is more than {drift} ms ahead of our clock {now_ms}")]
    TimeInFuture {
        /// The header's time.
        time_ms: u64,
        /// The receiver's clock.
        now_ms: u64,
        /// [`crate::MAX_CLOCK_DRIFT_MS`].
        drift: u64,
    },
    /// The block claims a time earlier than its parent.
    #[error("block time {time_ms} is before its parent's {parent_ms}")]
    TimeBeforeParent {
        /// The header's time.
        time_ms: u64,
        /// Parent's time.
        parent_ms: u64,
    },
    /// More than [`MAX_BLOCK_TRANSACTIONS`] transactions.
    #[error("block has {0} transactions, at most {MAX_BLOCK_TRANSACTIONS} allowed")]
    TooManyTransactions(usize),
    /// Encoded size over [`MAX_BLOCK_BYTES`].
    #[error("block is {0} bytes, at most {MAX_BLOCK_BYTES} allowed")]
    TooLarge(usize),
    /// The transaction Merkle root does not match the body.
    #[error("transaction root does not match the transactions")]
    TxRootMismatch,
    /// The full-transaction Merkle root does not match the body: a signature or proof was
    /// changed after the proposer built the block.
    #[error("full transaction root does not match the transactions")]
    FullTxRootMismatch,
    /// The rewards Merkle root does not match the body.
    #[error("rewards root does not match the reward outputs")]
    RewardsRootMismatch,
    /// A transaction is invalid.
    #[error("transaction {index} ({txid}): {error}")]
    Transaction {
        /// Position in the block.
        index: usize,
        /// Its id.
        txid: Hash256,
        /// Why.
        error: TxError,
    },
    /// Two transactions of the block spend the same output.
    #[error("transaction {index} spends {outpoint}, already spent earlier in the block")]
    DoubleSpend {
        /// Position of the second spender.
        index: usize,
        /// The output.
        outpoint: OutPoint,
    },
    /// Subsidy plus fees overflow.
    #[error("block reward overflows")]
    RewardOverflow,
    /// The reward outputs are not what every node computes.
    #[error("reward outputs differ from the expected split of {total}")]
    WrongRewards {
        /// Subsidy plus fees.
        total: Amount,
        /// What the block should pay.
        expected: Vec<TxOutput>,
    },
    /// The validator set after the block's registrations cannot be formed. Unreachable for
    /// blocks that pass the per-transaction checks (see [`TxError::WeightOverflow`]), kept so
    /// that constructing the set is never an unchecked step.
    #[error("validator set after the block's registrations: {0}")]
    ValidatorSet(String),
    /// The header's state root is not the state the block leads to from its parent's.
    #[error("header state root {header} differs from the state after the block, {computed}")]
    WrongStateRoot {
        /// What the header says.
        header: Hash256,
        /// What this node computes.
        computed: Hash256,
    },
    /// The genesis given is not the one the store was initialized with.
    #[error("validated against genesis {given}, but the store belongs to {stored}")]
    WrongGenesis {
        /// Hash in the store.
        stored: Hash256,
        /// Hash of the genesis given.
        given: Hash256,
    },
    /// The store could not be read or written.
    #[error("storage error while validating: {0}")]
    Storage(String),
}

impl BlockError {
    /// True if the rejection depends on the receiver: its tip (height, parent, the parent's
    /// time), its validator sets, UTXO set and stake records (every transaction error that
    /// reads them, the fees and so the rewards), its clock, its genesis, its protocol
    /// version or its storage. Such a block may be valid on another node or at another
    /// moment (a late or early proposal, a node behind or ahead), so whoever sent it is not
    /// at fault. False if the block is invalid on every node of the chain: roots that do not
    /// match the body, too many transactions or bytes, another chain id, a time before its
    /// slot, two spends of one output, or a transaction invalid whatever the state
    /// ([`TxError::is_local`]); a peer that sends such a block may be penalised.
    /// Conservative: anything that reads chain state is local.
    pub fn is_local(&self) -> bool {
        match self {
            BlockError::Transaction { error, .. } => error.is_local(),
            BlockError::WrongChain { .. }
            | BlockError::TimeBeforeSlot { .. }
            | BlockError::TooManyTransactions(_)
            | BlockError::TooLarge(_)
            | BlockError::TxRootMismatch
            | BlockError::FullTxRootMismatch
            | BlockError::RewardsRootMismatch
            | BlockError::DoubleSpend { .. } => false,
            // The version in force is the receiver's software's: during an upgrade, honest
            // nodes may disagree on it.
            BlockError::WrongVersion { .. }
            | BlockError::UnsupportedVersion { .. }
            | BlockError::WrongHeight { .. }
            | BlockError::WrongPrevHash { .. }
            | BlockError::WrongProposer { .. }
            | BlockError::WrongValidatorSet { .. }
            | BlockError::WrongNextValidatorSet { .. }
            | BlockError::TimeBeforeParent { .. }
            | BlockError::TimeInFuture { .. }
            | BlockError::RewardOverflow
            | BlockError::WrongRewards { .. }
            | BlockError::ValidatorSet(_)
            | BlockError::WrongStateRoot { .. }
            | BlockError::WrongGenesis { .. }
            | BlockError::Storage(_) => true,
        }
    }
}
