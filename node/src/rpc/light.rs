//! What a light client asks for: the validator set of any stored height, light blocks,
//! transaction inclusion paths, and the heights where the set changed (see `timecoin-light`
//! and `docs/PROTOCOL.md`).

use super::{error, internal, param, parse_hash, RpcResult, INVALID_PARAMS, NOT_FOUND};
use crate::shared::Shared;
use jsonrpsee::server::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::json;
use timecoin_chain::MerklePath;
use timecoin_ledger::{Store, StoreError};
use timecoin_light::LightBlock;
use timecoin_types::ValidatorSet;

/// Most heights one `getvalidatorchanges` call scans.
pub const MAX_CHANGE_SCAN: u64 = 1_000_000;

/// The set voting on `height`, or "not found" for a height the chain has not fixed yet.
fn set_at(store: &Store, height: u64) -> Result<ValidatorSet, ErrorObjectOwned> {
    store.validator_set(height).map_err(|e| match e {
        StoreError::UnknownHeight { .. } => error(NOT_FOUND, e.to_string()),
        other => internal(other),
    })
}

/// The light block of finalized `height`, or "not found".
fn light_block(store: &Store, height: u64) -> Result<LightBlock, ErrorObjectOwned> {
    if height == 0 {
        return Err(error(
            NOT_FOUND,
            "the genesis block is final by definition and has no certificate; its set is the genesis file's",
        ));
    }
    match crate::sync::light_block(store, height) {
        Ok(Some(block)) => Ok(block),
        Ok(None) => Err(error(
            NOT_FOUND,
            format!("no finalized block at height {height}"),
        )),
        Err(e @ (StoreError::Pruned { .. } | StoreError::UnknownHeight { .. })) => {
            Err(error(NOT_FOUND, e.to_string()))
        }
        Err(e) => Err(internal(e)),
    }
}

/// Adds the light-client methods to `m`.
pub(super) fn register(m: &mut RpcModule<Shared>) {
    let ok = "method names are unique";

    // `getvalidators [height]`: the set of that height; without a height, the node's view of
    // the next heights (see `validators_json`).
    m.register_blocking_method("getvalidators", |p, s, _| -> RpcResult {
        let height: Option<u64> = p
            .sequence()
            .optional_next()
            .map_err(|e| error(INVALID_PARAMS, format!("expected [height]: {e}")))?;
        let Some(height) = height else {
            return super::current_validators(&s);
        };
        let set = set_at(&s.store, height)?;
        Ok(json!(set
            .validators()
            .iter()
            .map(|v| json!({
                "id": hex::encode(&v.public_key.as_bytes()[..8]),
                "public_key": v.public_key.to_string(),
                "weight": v.weight,
                "reward_address": v.reward_address.to_string(),
            }))
            .collect::<Vec<_>>()))
    })
    .expect(ok);

    m.register_blocking_method("getlightblock", |p, s, _| -> RpcResult {
        let height: u64 = param(&p, "height")?;
        let light = light_block(&s.store, height)?;
        let mut value = serde_json::to_value(&light).map_err(internal)?;
        value["height"] = json!(height);
        value["hash"] = json!(light.header.hash().to_string());
        Ok(value)
    })
    .expect(ok);

    m.register_blocking_method("gettxproof", |p, s, _| -> RpcResult {
        let text: String = param(&p, "txid")?;
        let txid = parse_hash(&text, "txid")?;
        let location = s
            .store
            .transaction(&txid)
            .map_err(internal)?
            .ok_or_else(|| {
                error(
                    NOT_FOUND,
                    format!("transaction {txid} is not finalized here"),
                )
            })?;
        let block = super::block_at(&s, location.height)?;
        let index = location.index as usize;
        let (Some(transaction), Some(path)) = (
            block.transactions.get(index),
            MerklePath::of_transaction(&block.transactions, index),
        ) else {
            return Err(internal(format!(
                "block {} has no transaction at index {index}",
                location.height
            )));
        };
        Ok(json!({
            "txid": txid.to_string(),
            "height": location.height,
            "block_hash": block.hash().to_string(),
            "full_tx_root": block.header.full_tx_root.to_string(),
            "transaction": transaction,
            "path": path,
        }))
    })
    .expect(ok);

    // `getvalidatorchanges [from, to]`: the heights h in from..to whose header hands h + 1 to
    // a different set; the blocks `timed proof export` puts in a bundle.
    m.register_blocking_method("getvalidatorchanges", |p, s, _| -> RpcResult {
        let (from, to): (u64, u64) = p
            .parse()
            .map_err(|e| error(INVALID_PARAMS, format!("expected [from, to]: {e}")))?;
        if to < from || to - from > MAX_CHANGE_SCAN {
            return Err(error(
                INVALID_PARAMS,
                format!("expected from ≤ to, at most {MAX_CHANGE_SCAN} heights apart"),
            ));
        }
        let heights = s.store.set_changes(from, to).map_err(internal)?;
        Ok(json!({ "from": from, "to": to, "heights": heights }))
    })
    .expect(ok);
}
