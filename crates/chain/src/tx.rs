//! UTXO transactions.

use crate::fixed::{concat, field};
use crate::stake::Stake;
use serde::{Deserialize, Serialize};
use std::fmt;
use timecoin_types::{codec, Address, Amount, Hash256, Keypair, PublicKey, Signature};

/// A reference to one output of an earlier transaction (or of a block's rewards).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutPoint {
    /// The transaction (or reward pseudo-transaction) that created the output.
    pub txid: Hash256,
    /// Position of the output in that transaction.
    pub index: u32,
}

impl OutPoint {
    /// Fixed 36-byte form: txid then big-endian index. Used as the storage key, so the
    /// outputs of one transaction sort together.
    pub fn to_bytes(&self) -> [u8; 36] {
        concat(&[self.txid.as_bytes(), &self.index.to_be_bytes()])
    }

    /// Inverse of [`OutPoint::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 36]) -> OutPoint {
        OutPoint {
            txid: Hash256(field(bytes, 0)),
            index: u32::from_be_bytes(field(bytes, 32)),
        }
    }
}

impl fmt::Display for OutPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.txid, self.index)
    }
}

/// Coins locked to an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxOutput {
    /// Owner.
    pub address: Address,
    /// Value in base units.
    pub amount: Amount,
}

impl TxOutput {
    /// Fixed 28-byte form: address then big-endian amount. Used in hashes and storage.
    pub fn to_bytes(&self) -> [u8; 28] {
        concat(&[&self.address.0, &self.amount.to_be_bytes()])
    }

    /// Inverse of [`TxOutput::to_bytes`].
    pub fn from_bytes(bytes: &[u8; 28]) -> TxOutput {
        TxOutput {
            address: Address(field(bytes, 0)),
            amount: u64::from_be_bytes(field(bytes, 20)),
        }
    }
}

/// Checks that every output of `outputs` carries coins (else `zero` of its position) and
/// that together they fit in `u64` base units (else `overflow`); the first offence in list
/// order is the one reported. Transaction outputs and genesis allocations obey this one rule.
pub fn check_amounts<E>(
    outputs: &[TxOutput],
    zero: impl FnOnce(usize) -> E,
    overflow: E,
) -> Result<(), E> {
    let mut total: Amount = 0;
    for (i, output) in outputs.iter().enumerate() {
        if output.amount == 0 {
            return Err(zero(i));
        }
        match total.checked_add(output.amount) {
            Some(sum) => total = sum,
            None => return Err(overflow),
        }
    }
    Ok(())
}

/// Spends one output: the owner's public key and its signature over the transaction's
/// [`Transaction::sign_digest`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxInput {
    /// The output spent.
    pub prev: OutPoint,
    /// Key whose address owns the spent output.
    pub public_key: PublicKey,
    /// Ed25519 signature over the transaction's sign digest.
    pub signature: Signature,
}

/// A transfer, optionally also a validator (de)registration: the fee is the sum of the spent
/// outputs minus the sum of the new outputs (a staking output counts as an output).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transaction {
    /// Outputs spent.
    pub inputs: Vec<TxInput>,
    /// Outputs created.
    pub outputs: Vec<TxOutput>,
    /// What the transaction does to the validator set; absent for a plain transfer (and
    /// then not encoded at all, so transfers keep their encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake: Option<Stake>,
}

impl Transaction {
    /// The transaction id: BLAKE3 over a fixed layout of everything except the signatures,
    /// so a third party cannot change the id by re-encoding a signature. A staking action is
    /// appended after the outputs, so a plain transfer's layout is unchanged.
    pub fn txid(&self) -> Hash256 {
        Hash256::digest(&self.txid_bytes())
    }

    /// The bytes [`Transaction::txid`] hashes: `"TIMECOIN/TXID/01"`, the input count (u32 BE),
    /// each input's outpoint and key, the output count, each output's fixed form, then the
    /// staking action's id bytes, if any.
    pub fn txid_bytes(&self) -> Vec<u8> {
        let mut bytes =
            Vec::with_capacity(16 + 8 + self.inputs.len() * 68 + self.outputs.len() * 28);
        bytes.extend_from_slice(b"TIMECOIN/TXID/01");
        bytes.extend_from_slice(&(self.inputs.len() as u32).to_be_bytes());
        for input in &self.inputs {
            bytes.extend_from_slice(&input.prev.to_bytes());
            bytes.extend_from_slice(input.public_key.as_bytes());
        }
        bytes.extend_from_slice(&(self.outputs.len() as u32).to_be_bytes());
        for output in &self.outputs {
            bytes.extend_from_slice(&output.to_bytes());
        }
        if let Some(stake) = &self.stake {
            bytes.extend_from_slice(&stake.id_bytes());
        }
        bytes
    }

    /// The hash of the complete transaction: BLAKE3 of `"TIMECOIN/TXFL/01"`, the txid, every
    /// input's signature in order and, for a registration, a presence byte and the proof of
    /// possession. The txid already fixes every other byte, so this commits to all of them;
    /// a block's `full_tx_root` is built from these, so nobody can change a signature inside
    /// a block without changing its hash.
    pub fn full_hash(&self) -> Hash256 {
        Hash256::digest(&self.full_bytes())
    }

    /// The bytes [`Transaction::full_hash`] hashes.
    pub fn full_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + 32 + self.inputs.len() * 64 + 65);
        bytes.extend_from_slice(b"TIMECOIN/TXFL/01");
        bytes.extend_from_slice(self.txid().as_bytes());
        for input in &self.inputs {
            bytes.extend_from_slice(&input.signature.0);
        }
        if let Some(Stake::Register { proof, .. }) = &self.stake {
            match proof {
                Some(proof) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&proof.0);
                }
                None => bytes.push(0),
            }
        }
        bytes
    }

    /// The digest every input signs: domain tag, length-prefixed chain id, txid. Binding the
    /// chain id stops a transaction from being replayed on another network.
    pub fn sign_digest(&self, chain_id: &str) -> Hash256 {
        let txid = self.txid();
        let mut bytes = Vec::with_capacity(16 + 2 + chain_id.len() + 32);
        bytes.extend_from_slice(b"TIMECOIN/TXSG/01");
        bytes.extend_from_slice(&(chain_id.len() as u16).to_be_bytes());
        bytes.extend_from_slice(chain_id.as_bytes());
        bytes.extend_from_slice(txid.as_bytes());
        Hash256::digest(&bytes)
    }

    /// Builds a transaction spending `inputs`, each signed by the paired key.
    pub fn build_signed(
        chain_id: &str,
        inputs: Vec<(OutPoint, &Keypair)>,
        outputs: Vec<TxOutput>,
    ) -> Transaction {
        Transaction::build_signed_with_stake(chain_id, inputs, outputs, None)
    }

    /// As [`Transaction::build_signed`], carrying a staking action the signatures cover.
    pub fn build_signed_with_stake(
        chain_id: &str,
        inputs: Vec<(OutPoint, &Keypair)>,
        outputs: Vec<TxOutput>,
        stake: Option<Stake>,
    ) -> Transaction {
        let mut tx = Transaction {
            inputs: inputs
                .iter()
                .map(|(prev, key)| TxInput {
                    prev: *prev,
                    public_key: key.public(),
                    signature: Signature([0; 64]),
                })
                .collect(),
            outputs,
            stake,
        };
        let digest = tx.sign_digest(chain_id);
        for (input, (_, key)) in tx.inputs.iter_mut().zip(&inputs) {
            input.signature = key.sign(&digest);
        }
        tx
    }

    /// Size of the wire (CBOR) encoding in bytes; the size limits and fee rates use it.
    pub fn encoded_len(&self) -> usize {
        codec::encode(self).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transaction {
        let key = Keypair::from_seed([3; 32]);
        Transaction::build_signed(
            "test",
            vec![(
                OutPoint {
                    txid: Hash256::digest(b"prev"),
                    index: 1,
                },
                &key,
            )],
            vec![TxOutput {
                address: Address::of(&key.public()),
                amount: 5,
            }],
        )
    }

    #[test]
    fn txid_ignores_signatures_but_binds_everything_else() {
        let tx = sample();
        let mut resigned = tx.clone();
        resigned.inputs[0].signature = Signature([9; 64]);
        assert_eq!(tx.txid(), resigned.txid());
        let mut changed = tx.clone();
        changed.outputs[0].amount = 6;
        assert_ne!(tx.txid(), changed.txid());
        let mut changed = tx.clone();
        changed.inputs[0].prev.index = 2;
        assert_ne!(tx.txid(), changed.txid());
        let mut changed = tx.clone();
        changed.inputs[0].public_key = Keypair::from_seed([4; 32]).public();
        assert_ne!(tx.txid(), changed.txid());
    }

    #[test]
    fn full_hash_binds_the_signatures_too() {
        let tx = sample();
        let mut resigned = tx.clone();
        resigned.inputs[0].signature.0[17] ^= 1;
        assert_eq!(tx.txid(), resigned.txid());
        assert_ne!(tx.full_hash(), resigned.full_hash());
        let mut changed = tx.clone();
        changed.outputs[0].amount = 6;
        assert_ne!(tx.full_hash(), changed.full_hash());
    }

    #[test]
    fn signatures_verify_and_bind_chain_id() {
        let tx = sample();
        let input = &tx.inputs[0];
        assert!(input
            .public_key
            .verify(&tx.sign_digest("test"), &input.signature)
            .is_ok());
        assert!(input
            .public_key
            .verify(&tx.sign_digest("other"), &input.signature)
            .is_err());
    }

    #[test]
    fn fixed_forms_round_trip_and_codec_round_trips() {
        let tx = sample();
        let op = tx.inputs[0].prev;
        assert_eq!(OutPoint::from_bytes(&op.to_bytes()), op);
        assert_eq!(
            TxOutput::from_bytes(&tx.outputs[0].to_bytes()),
            tx.outputs[0]
        );
        let bytes = codec::encode(&tx);
        assert_eq!(bytes.len(), tx.encoded_len());
        assert_eq!(codec::decode::<Transaction>(&bytes, 1 << 20).unwrap(), tx);
    }
}
