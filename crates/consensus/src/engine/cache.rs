//! The blocks of the height in progress with what the application said of them: a block
//! is prepared only once it is known valid, and the locked or valid block must stay at
//! hand to be re-proposed. Bounded by `Config::max_cached_blocks`.

use super::{HeightState, Outbox};
use crate::messages::Output;
use timecoin_types::Hash256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Validity {
    Pending,
    Valid,
    Invalid,
}

pub(super) struct CachedBlock<B> {
    block: B,
    validity: Validity,
    /// Highest round that proposed it: eviction drops the oldest first.
    round: u32,
}

impl<B: Clone + std::fmt::Debug> HeightState<B> {
    /// Adds a block to the cache (asking the application to validate it), evicting the
    /// block of the oldest round that is neither locked nor valid when full.
    pub(super) fn cache_block(
        &mut self,
        out: &mut Outbox<'_, B>,
        hash: Hash256,
        block: B,
        round: u32,
        validity: Validity,
    ) {
        if let Some(b) = self.blocks.get_mut(&hash) {
            b.round = b.round.max(round);
            return;
        }
        if self.blocks.len() >= out.config.max_cached_blocks {
            let keep = |h: &Hash256| {
                self.locked.is_some_and(|(_, l)| l == *h)
                    || self.valid.is_some_and(|(_, v)| v == *h)
            };
            let victim = self
                .blocks
                .iter()
                .filter(|(h, _)| !keep(h))
                .min_by_key(|(_, b)| b.round)
                .map(|(h, _)| *h);
            match victim {
                Some(v) => {
                    self.blocks.remove(&v);
                }
                None => return,
            }
        }
        if validity == Validity::Pending {
            out.outputs.push(Output::ValidateBlock {
                height: self.height,
                block_hash: hash,
                block: block.clone(),
            });
        }
        self.blocks.insert(
            hash,
            CachedBlock {
                block,
                validity,
                round,
            },
        );
    }

    /// Records the application's answer for a block waiting for it; false when none was.
    pub(super) fn settle_validity(&mut self, hash: &Hash256, valid: bool) -> bool {
        match self.blocks.get_mut(hash) {
            Some(b) if b.validity == Validity::Pending => {
                b.validity = if valid {
                    Validity::Valid
                } else {
                    Validity::Invalid
                };
                true
            }
            _ => false,
        }
    }

    pub(super) fn validity(&self, hash: &Hash256) -> Option<Validity> {
        self.blocks.get(hash).map(|b| b.validity)
    }

    /// The block to hand over with a decision: cached and not found invalid. A block still
    /// being validated goes too (applying it checks it again); an invalid one does not, and
    /// the node fetches the decided block with its certificate from peers instead.
    pub(super) fn decided_block(&self, hash: &Hash256) -> Option<B> {
        let b = self.blocks.get(hash)?;
        (b.validity != Validity::Invalid).then(|| b.block.clone())
    }

    /// The block, if cached and known valid.
    pub(super) fn valid_block(&self, hash: &Hash256) -> Option<B> {
        let b = self.blocks.get(hash)?;
        (b.validity == Validity::Valid).then(|| b.block.clone())
    }
}
