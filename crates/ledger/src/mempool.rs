//! Transactions waiting for a block: deduplicated by txid, free of conflicts, ordered by fee
//! rate, bounded in count and bytes, and dropped after a time to live.
//!
//! The pool never reads a clock: the caller passes the time (milliseconds, any monotonic or
//! wall clock, as long as it is the same one) at insertion and expiry.

use crate::block::Block;
use crate::stake::Stake;
use crate::tx::{OutPoint, Transaction};
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use timecoin_types::{Amount, Hash256};

/// Why the mempool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// Already pooled.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(Hash256),
    /// Spends an output a pooled transaction already spends.
    #[error("input {outpoint} is already spent by pooled transaction {existing}")]
    Conflict {
        /// The contested output.
        outpoint: OutPoint,
        /// The pooled spender.
        existing: Hash256,
    },
    /// Larger than the whole pool may hold.
    #[error("transaction of {size} bytes exceeds the mempool's {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The pool's byte bound.
        max: usize,
    },
    /// The pool is full of transactions paying at least as much per byte.
    #[error("mempool is full and the transaction's fee rate is too low to evict any")]
    Full,
}

/// What a staking action is about: the key it registers or the stake it ends. Two pooled
/// actions with the same target cannot both be finalized.
#[derive(PartialEq)]
enum StakeTarget {
    Key(timecoin_types::PublicKey),
    Stake(OutPoint),
}

fn stake_target(stake: &Stake) -> StakeTarget {
    match stake {
        Stake::Register { public_key, .. } => StakeTarget::Key(*public_key),
        Stake::Deregister { stake } => StakeTarget::Stake(*stake),
    }
}

/// Orders by fee per byte (exactly, by cross-multiplying), then by txid so the order is
/// total and the same on every node.
#[derive(Clone, Copy, Debug)]
struct Priority {
    fee: Amount,
    size: usize,
    txid: Hash256,
}

impl Priority {
    /// Compares fee rates only.
    fn rate_cmp(&self, other: &Self) -> Ordering {
        let ours = self.fee as u128 * other.size as u128;
        let theirs = other.fee as u128 * self.size as u128;
        ours.cmp(&theirs)
    }
}

impl Ord for Priority {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rate_cmp(other).then(other.txid.cmp(&self.txid))
    }
}

impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Priority {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Priority {}

struct Entry {
    tx: Transaction,
    priority: Priority,
    /// When it was admitted (the caller's clock, milliseconds).
    admitted_ms: u64,
}

/// The pool of valid, unconfirmed transactions. The caller validates a transaction against
/// the store before inserting it; the pool keeps the set free of conflicts. Validation spends
/// only finalized outputs, so no pooled transaction depends on another: removing one never
/// invalidates the rest.
pub struct Mempool {
    max_count: usize,
    max_bytes: usize,
    ttl_ms: u64,
    bytes: usize,
    entries: HashMap<Hash256, Entry>,
    spenders: HashMap<OutPoint, Hash256>,
    by_priority: BTreeSet<Priority>,
    /// (admission time, txid) of every entry, oldest first.
    by_age: BTreeSet<(u64, Hash256)>,
}

impl Mempool {
    /// An empty pool holding at most `max_count` transactions and `max_bytes` encoded bytes,
    /// each for `ttl_ms` milliseconds after its admission (see [`Mempool::expire`]). A
    /// transaction that is never included (its fee rate is too low, or it became invalid in
    /// a way no block reveals) would otherwise hold its inputs and its room forever.
    pub fn new(max_count: usize, max_bytes: usize, ttl_ms: u64) -> Mempool {
        Mempool {
            max_count,
            max_bytes,
            ttl_ms,
            bytes: 0,
            entries: HashMap::new(),
            spenders: HashMap::new(),
            by_priority: BTreeSet::new(),
            by_age: BTreeSet::new(),
        }
    }

    /// Adds a validated transaction paying `fee`, admitted at `now_ms`. Refuses duplicates
    /// and conflicts with pooled transactions; when full, evicts the lowest fee rates if the
    /// new transaction pays more per byte than each of them, else refuses it. Returns the
    /// txid.
    pub fn insert(
        &mut self,
        tx: Transaction,
        fee: Amount,
        now_ms: u64,
    ) -> Result<Hash256, MempoolError> {
        let txid = tx.txid();
        if self.entries.contains_key(&txid) {
            return Err(MempoolError::Duplicate(txid));
        }
        for input in &tx.inputs {
            if let Some(existing) = self.spenders.get(&input.prev) {
                return Err(MempoolError::Conflict {
                    outpoint: input.prev,
                    existing: *existing,
                });
            }
        }
        let size = tx.encoded_len();
        if size > self.max_bytes || self.max_count == 0 {
            return Err(MempoolError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let priority = Priority { fee, size, txid };

        // Decide every eviction before changing anything, so a refusal leaves the pool as
        // it was.
        let mut victims = Vec::new();
        let mut count = self.entries.len() + 1;
        let mut bytes = self.bytes + size;
        for lowest in &self.by_priority {
            if count <= self.max_count && bytes <= self.max_bytes {
                break;
            }
            // Only a strictly higher fee rate may push others out.
            if lowest.rate_cmp(&priority) != Ordering::Less {
                return Err(MempoolError::Full);
            }
            victims.push(lowest.txid);
            count -= 1;
            bytes -= lowest.size;
        }
        for victim in victims {
            self.remove(&victim);
        }

        for input in &tx.inputs {
            self.spenders.insert(input.prev, txid);
        }
        self.bytes += size;
        self.by_priority.insert(priority);
        self.by_age.insert((now_ms, txid));
        self.entries.insert(
            txid,
            Entry {
                tx,
                priority,
                admitted_ms: now_ms,
            },
        );
        Ok(txid)
    }

    /// Drops every transaction whose time to live has run out at `now_ms` (admitted at `t`,
    /// it expires once `now_ms >= t + ttl_ms`, saturating, so a TTL of `u64::MAX` never
    /// runs out), with its spent outputs, bytes and rank, and returns how many were dropped.
    /// Call it periodically (on each new block, say).
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut expired = Vec::new();
        for &(admitted_ms, txid) in &self.by_age {
            if admitted_ms.saturating_add(self.ttl_ms) > now_ms {
                break;
            }
            expired.push(txid);
        }
        for txid in &expired {
            self.remove(txid);
        }
        expired.len()
    }

    /// Up to `max_count` transactions totalling at most `max_bytes`, highest fee rate first;
    /// no two spend the same output.
    pub fn select(&self, max_count: usize, max_bytes: usize) -> Vec<Transaction> {
        let mut picked = Vec::new();
        let mut bytes = 0usize;
        for priority in self.by_priority.iter().rev() {
            if picked.len() == max_count {
                break;
            }
            if bytes + priority.size > max_bytes {
                continue;
            }
            if let Some(entry) = self.entries.get(&priority.txid) {
                bytes += priority.size;
                picked.push(entry.tx.clone());
            }
        }
        picked
    }

    /// Drops the block's transactions, every pooled transaction that spends an output the
    /// block spent, and every pooled registration of a key the block registered or
    /// deregistration of a stake it deregistered (they can never be valid again, and no
    /// input conflict would remove them).
    pub fn remove_for_block(&mut self, block: &Block) {
        let mut staked = Vec::new();
        for tx in &block.transactions {
            self.remove(&tx.txid());
            for input in &tx.inputs {
                if let Some(spender) = self.spenders.get(&input.prev).copied() {
                    self.remove(&spender);
                }
            }
            staked.extend(tx.stake.as_ref().map(stake_target));
        }
        if staked.is_empty() {
            return;
        }
        let stale: Vec<Hash256> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.tx.stake
                    .as_ref()
                    .is_some_and(|s| staked.contains(&stake_target(s)))
            })
            .map(|(txid, _)| *txid)
            .collect();
        for txid in stale {
            self.remove(&txid);
        }
    }

    fn remove(&mut self, txid: &Hash256) {
        if let Some(entry) = self.entries.remove(txid) {
            for input in &entry.tx.inputs {
                self.spenders.remove(&input.prev);
            }
            self.by_priority.remove(&entry.priority);
            self.by_age.remove(&(entry.admitted_ms, *txid));
            self.bytes -= entry.priority.size;
        }
    }

    /// True if `txid` is pooled.
    pub fn contains(&self, txid: &Hash256) -> bool {
        self.entries.contains_key(txid)
    }

    /// True if a pooled transaction spends `outpoint` (wallets skip such outputs).
    pub fn spends(&self, outpoint: &OutPoint) -> bool {
        self.spenders.contains_key(outpoint)
    }

    /// The pooled transaction `txid`.
    pub fn get(&self, txid: &Hash256) -> Option<&Transaction> {
        self.entries.get(txid).map(|e| &e.tx)
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is pooled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total encoded size of the pooled transactions.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
