//! A steady load for measuring the store's size: blocks full of transfers that keep the UTXO
//! set's size constant, applied in batches with the file's size after each.

use super::*;

/// Builds, certifies and applies the next block with `txs` (all of which must make it in),
/// returning it with its certificate.
pub fn commit(chain: &Chain, txs: Vec<Transaction>) -> (Block, Certificate) {
    let count = txs.len();
    let block = chain.build(txs);
    assert_eq!(block.transactions.len(), count, "every transaction fits");
    let certificate = chain.certify(&block);
    chain
        .store
        .apply_block(&block, &certificate, &chain.genesis)
        .unwrap();
    (block, certificate)
}

/// Transfers that keep the UTXO set's size constant while filling blocks: `coins` are the
/// wallet's, spent `INPUTS_PER_TX` at a time into as many new ones, each `FEE_PER_INPUT`
/// smaller.
pub struct Workload {
    coins: Vec<(OutPoint, Amount)>,
}

const INPUTS_PER_TX: usize = 20;
const TXS_PER_BLOCK: usize = 4;
const FEE_PER_INPUT: Amount = 500;

impl Workload {
    /// Splits the genesis allocations into the coins of a block's worth of transfers.
    fn start(chain: &Chain) -> Workload {
        let needed = INPUTS_PER_TX * TXS_PER_BLOCK;
        let per_allocation = needed.div_ceil(ALLOCATIONS);
        let fee = 10_000;
        let amount = (ALLOCATION - fee) / per_allocation as u64;
        let me = address(&chain.wallet);
        let txs: Vec<Transaction> = (0..ALLOCATIONS as u32)
            .map(|i| {
                let outputs = vec![
                    TxOutput {
                        address: me,
                        amount,
                    };
                    per_allocation
                ];
                Transaction::build_signed(
                    CHAIN,
                    vec![(chain.allocation(i), &chain.wallet)],
                    outputs,
                )
            })
            .collect();
        let coins = txs
            .iter()
            .flat_map(|tx| {
                let txid = tx.txid();
                (0..per_allocation as u32).map(move |index| (OutPoint { txid, index }, amount))
            })
            .take(needed)
            .collect();
        commit(chain, txs);
        Workload { coins }
    }

    /// Applies the next block of transfers; returns the size of its encoding.
    fn block(&mut self, chain: &Chain) -> usize {
        let me = address(&chain.wallet);
        let txs: Vec<Transaction> = self
            .coins
            .chunks(INPUTS_PER_TX)
            .map(|group| {
                Transaction::build_signed(
                    CHAIN,
                    group.iter().map(|(op, _)| (*op, &chain.wallet)).collect(),
                    group
                        .iter()
                        .map(|(_, value)| TxOutput {
                            address: me,
                            amount: value - FEE_PER_INPUT,
                        })
                        .collect(),
                )
            })
            .collect();
        self.coins = txs
            .iter()
            .zip(self.coins.chunks(INPUTS_PER_TX))
            .flat_map(|(tx, group)| {
                let txid = tx.txid();
                group.iter().enumerate().map(move |(index, (_, value))| {
                    (
                        OutPoint {
                            txid,
                            index: index as u32,
                        },
                        value - FEE_PER_INPUT,
                    )
                })
            })
            .collect();
        let (block, _) = commit(chain, txs);
        timecoin_types::codec::encode(&block).len()
    }
}

/// The file size and the bytes of pages in use after each batch, and the block bytes applied
/// in each.
pub struct Growth {
    pub file: Vec<u64>,
    pub used: Vec<u64>,
    pub bodies: Vec<u64>,
}

/// Runs `batches` batches of `per_batch` blocks of transfers on a store keeping `retain`
/// bodies.
pub fn grow(retain: u64, batches: usize, per_batch: usize) -> Growth {
    let mut chain = Chain::new();
    chain.reopen_retaining(retain);
    let mut workload = Workload::start(&chain);
    let mut growth = Growth {
        file: Vec::new(),
        used: Vec::new(),
        bodies: Vec::new(),
    };
    for _ in 0..batches {
        let bytes: usize = (0..per_batch).map(|_| workload.block(&chain)).sum();
        growth.bodies.push(bytes as u64);
        growth.file.push(chain.store.file_bytes().unwrap());
        growth.used.push(chain.store.allocated_bytes().unwrap());
    }
    let tip = chain.height();
    if retain > 0 {
        assert_eq!(chain.store.pruned_below().unwrap(), tip + 1 - retain);
    }
    growth
}
