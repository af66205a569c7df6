//! JSON-RPC 2.0 over HTTP (jsonrpsee), plus `GET /metrics` in Prometheus text format.

use crate::node::Shared;
use jsonrpsee::server::{
    HttpBody, HttpRequest, HttpResponse, RpcModule, Server, ServerConfig, ServerHandle,
};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Params};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use timecoin_ledger::{Block, Transaction};
use timecoin_types::{codec, Address, Hash256};

/// A parameter is missing or malformed.
const INVALID_PARAMS: i32 = -32602;
/// The height, block or transaction is not known.
const NOT_FOUND: i32 = -32001;
/// A submitted transaction was refused.
const TX_REJECTED: i32 = -32002;
/// The node failed to read its own state.
const INTERNAL: i32 = -32603;

type RpcResult = Result<Value, ErrorObjectOwned>;

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObject::owned(code, message.into(), None::<()>)
}

fn internal(err: impl std::fmt::Display) -> ErrorObjectOwned {
    error(INTERNAL, format!("internal error: {err}"))
}

fn param<T: serde::de::DeserializeOwned>(
    params: &Params,
    what: &str,
) -> Result<T, ErrorObjectOwned> {
    let (value,): (T,) = params.parse().map_err(|e| {
        let detail = e.data().map_or_else(
            || e.message().to_string(),
            |d| d.get().trim_matches('"').to_string(),
        );
        error(INVALID_PARAMS, format!("expected [{what}]: {detail}"))
    })?;
    Ok(value)
}

fn parse_hash(text: &str, what: &str) -> Result<Hash256, ErrorObjectOwned> {
    Hash256::from_hex(text)
        .map_err(|_| error(INVALID_PARAMS, format!("{what} must be 64 hex digits")))
}

fn parse_address(text: &str) -> Result<Address, ErrorObjectOwned> {
    text.parse()
        .map_err(|e| error(INVALID_PARAMS, format!("invalid address: {e}")))
}

fn block_at(shared: &Shared, height: u64) -> Result<Block, ErrorObjectOwned> {
    shared
        .store
        .block(height)
        .map_err(internal)?
        .ok_or_else(|| error(NOT_FOUND, format!("no finalized block at height {height}")))
}

fn block_json(shared: &Shared, block: &Block) -> RpcResult {
    let transactions = block
        .transactions
        .iter()
        .map(|tx| {
            let fee = shared.store.transaction_fee(&tx.txid()).map_err(internal)?;
            Ok(json!({
                "txid": tx.txid().to_string(),
                "fee": fee,
                "inputs": tx.inputs.iter().map(|i| json!({
                    "txid": i.prev.txid.to_string(), "index": i.prev.index,
                    "public_key": i.public_key.to_string(),
                })).collect::<Vec<_>>(),
                "outputs": tx.outputs.iter().map(|o| json!({
                    "address": o.address.to_string(), "amount": o.amount,
                })).collect::<Vec<_>>(),
            }))
        })
        .collect::<Result<Vec<_>, ErrorObjectOwned>>()?;
    let h = &block.header;
    Ok(json!({
        "height": h.height,
        "hash": block.hash().to_string(),
        "prev_hash": h.prev_hash.to_string(),
        "proposer": h.proposer.to_string(),
        "round": h.round,
        "time_ms": h.time_ms,
        "finalized_at_ms": shared.finalized_at.lock().expect("finalized_at lock").get(h.height),
        "tx_root": h.tx_root.to_string(),
        "validator_set_hash": h.validator_set_hash.to_string(),
        "transactions": transactions,
        "rewards": block.rewards.iter().map(|o| json!({
            "address": o.address.to_string(), "amount": o.amount,
        })).collect::<Vec<_>>(),
    }))
}

fn decode_transaction(hex_text: &str) -> Result<Transaction, ErrorObjectOwned> {
    let bytes = hex::decode(hex_text.trim())
        .map_err(|_| error(INVALID_PARAMS, "transaction must be hex-encoded CBOR"))?;
    codec::decode(&bytes, timecoin_ledger::MAX_TX_BYTES)
        .map_err(|e| error(INVALID_PARAMS, format!("cannot decode transaction: {e}")))
}

/// Builds the RPC method table.
fn methods(shared: Arc<Shared>) -> RpcModule<Shared> {
    let mut m = RpcModule::from_arc(shared);
    let ok = "method names are unique";

    m.register_blocking_method("getblockchaininfo", |_, s, _| -> RpcResult {
        let (height, hash) = s.store.tip().map_err(internal)?;
        let status = s.status.borrow().clone();
        Ok(json!({
            "chain_id": s.genesis.chain_id,
            "height": height,
            "best_block_hash": hash.to_string(),
            "consensus_height": status.height,
            "round": status.round,
            "step": status.step,
            "validator": status.validator,
            "genesis_time_ms": s.genesis.genesis_time_ms,
            "block_interval_ms": s.genesis.block_interval_ms,
        }))
    })
    .expect(ok);

    m.register_blocking_method("getblockhash", |p, s, _| -> RpcResult {
        let height: u64 = param(&p, "height")?;
        let hash = s
            .store
            .block_hash(height)
            .map_err(internal)?
            .ok_or_else(|| error(NOT_FOUND, format!("no finalized block at height {height}")))?;
        Ok(json!(hash.to_string()))
    })
    .expect(ok);

    m.register_blocking_method("getblock", |p, s, _| -> RpcResult {
        let height: u64 = param(&p, "height")?;
        block_json(&s, &block_at(&s, height)?)
    })
    .expect(ok);

    m.register_blocking_method("getfinalityproof", |p, s, _| -> RpcResult {
        let height: u64 = param(&p, "height")?;
        if height == 0 {
            return Err(error(
                NOT_FOUND,
                "the genesis block is final by definition and has no certificate",
            ));
        }
        let cert = s
            .store
            .certificate(height)
            .map_err(internal)?
            .ok_or_else(|| error(NOT_FOUND, format!("no finalized block at height {height}")))?;
        let set = s.store.validator_set(height).map_err(internal)?;
        let signed: u64 = cert
            .signatures
            .iter()
            .map(|c| set.weight_of(&c.validator))
            .sum();
        Ok(json!({
            "height": cert.height,
            "block_hash": cert.block_hash.to_string(),
            "round": cert.round,
            "signatures": cert.signatures.iter().map(|c| json!({
                "validator": c.validator.to_string(), "signature": c.signature.to_string(),
            })).collect::<Vec<_>>(),
            "signed_weight": signed,
            "total_weight": set.total_weight(),
            "certificate": hex::encode(codec::encode(&cert)),
        }))
    })
    .expect(ok);

    m.register_blocking_method("getvalidators", |_, s, _| -> RpcResult {
        let (tip, _) = s.store.tip().map_err(internal)?;
        let set = s.store.validator_set(tip + 1).map_err(internal)?;
        Ok(Value::Array(
            set.validators()
                .iter()
                .map(|v| {
                    json!({
                        "id": hex::encode(&v.public_key.as_bytes()[..8]),
                        "public_key": v.public_key.to_string(),
                        "weight": v.weight,
                        "reward_address": v.reward_address.to_string(),
                    })
                })
                .collect(),
        ))
    })
    .expect(ok);

    m.register_blocking_method("getbalance", |p, s, _| -> RpcResult {
        let text: String = param(&p, "address")?;
        let address = parse_address(&text)?;
        let balance = s.store.balance(&address).map_err(internal)?;
        Ok(json!({ "address": address.to_string(), "balance": balance }))
    })
    .expect(ok);

    m.register_blocking_method("listunspent", |p, s, _| -> RpcResult {
        let text: String = param(&p, "address")?;
        let address = parse_address(&text)?;
        let unspent = s.store.unspent(&address).map_err(internal)?;
        let pool = s.mempool.lock().expect("mempool lock");
        Ok(Value::Array(
            unspent
                .into_iter()
                .filter(|(outpoint, _)| !pool.spends(outpoint))
                .map(|(o, out)| json!({ "txid": o.txid.to_string(), "index": o.index, "amount": out.amount }))
                .collect(),
        ))
    })
    .expect(ok);

    m.register_async_method("sendrawtransaction", |p, s, _| async move {
        let text: String = param(&p, "hex")?;
        let tx = decode_transaction(&text)?;
        let txid = s
            .submit_transaction(tx)
            .await
            .map_err(|e| error(TX_REJECTED, format!("transaction rejected: {e}")))?;
        RpcResult::Ok(json!(txid.to_string()))
    })
    .expect(ok);

    m.register_blocking_method("gettransaction", |p, s, _| -> RpcResult {
        let text: String = param(&p, "txid")?;
        let txid = parse_hash(&text, "txid")?;
        if let Some(height) = s.store.transaction_height(&txid).map_err(internal)? {
            let fee = s.store.transaction_fee(&txid).map_err(internal)?;
            return Ok(
                json!({ "txid": text, "status": "finalized", "height": height, "fee": fee }),
            );
        }
        if s.mempool.lock().expect("mempool lock").contains(&txid) {
            return Ok(json!({ "txid": text, "status": "pending" }));
        }
        Err(error(
            NOT_FOUND,
            format!("transaction {txid} is neither pending nor finalized"),
        ))
    })
    .expect(ok);

    m.register_async_method("getpeerinfo", |_, s, _| async move {
        serde_json::to_value(s.net.peers().await).map_err(internal)
    })
    .expect(ok);

    m.register_blocking_method("getmempoolinfo", |_, s, _| -> RpcResult {
        let pool = s.mempool.lock().expect("mempool lock");
        Ok(json!({ "size": pool.len(), "bytes": pool.bytes() }))
    })
    .expect(ok);

    m.register_blocking_method("getevidence", |p, s, _| -> RpcResult {
        let from: u64 = p.parse::<(u64,)>().map(|(h,)| h).unwrap_or(0);
        let items = s.store.evidence(from, 1000).map_err(internal)?;
        let list = items
            .into_iter()
            .filter_map(|(height, bytes)| {
                let evidence: timecoin_consensus::Evidence = codec::decode(&bytes, 1 << 16).ok()?;
                Some(crate::node::evidence_json(height, &evidence))
            })
            .collect();
        Ok(Value::Array(list))
    })
    .expect(ok);

    m
}

/// Starts the RPC server on `addr`.
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let middleware = tower::ServiceBuilder::new().layer(MetricsLayer(shared.clone()));
    let config = ServerConfig::builder()
        .max_request_body_size(1 << 20)
        .max_connections(256)
        .http_only()
        .build();
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(middleware)
        .build(addr)
        .await?;
    let local = server.local_addr()?;
    let handle = server.start(methods(shared));
    Ok((local, handle))
}

/// Answers `GET /metrics` with the Prometheus text format and passes everything else on.
#[derive(Clone)]
struct MetricsLayer(Arc<Shared>);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            shared: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
struct MetricsService<S> {
    shared: Arc<Shared>,
    inner: S,
}

impl<S> tower::Service<HttpRequest> for MetricsService<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse>,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
            let text = self.shared.metrics.encode();
            let response = http::Response::builder()
                .header(
                    http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(HttpBody::from(text))
                .expect("static response parts are valid");
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}
