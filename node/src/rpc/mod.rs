//! JSON-RPC 2.0 over HTTP (jsonrpsee), plus, on the same port, `GET /metrics` in Prometheus
//! text format and the dashboard's `GET /dashboard`, `GET /dashboard/state` and `GET /events`
//! (see [`crate::dashboard`]).

mod light;

pub use light::MAX_CHANGE_SCAN;

use crate::shared::Shared;
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
use timecoin_consensus::Evidence;
use timecoin_ledger::{
    Block, OutPoint, Stake, StakeRecord, StoreError, Transaction, ACTIVATION_DELAY,
};
use timecoin_types::{codec, Address, Hash256, Proposal, PublicKey, Validator, ValidatorSet, Vote};
use tokio::sync::broadcast;

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

/// The finalized block at `height`; "not found", saying so, when this node pruned its body.
fn block_at(shared: &Shared, height: u64) -> Result<Block, ErrorObjectOwned> {
    shared
        .store
        .block(height)
        .map_err(|e| match e {
            StoreError::Pruned {
                height,
                retained_from,
            } => error(NOT_FOUND, pruned_message(height, retained_from)),
            other => internal(other),
        })?
        .ok_or_else(|| error(NOT_FOUND, format!("no finalized block at height {height}")))
}

/// What `getblock` and `gettxproof` answer for a height whose body was pruned here.
fn pruned_message(height: u64, retained_from: u64) -> String {
    format!(
        "block {height} is pruned: this node keeps block bodies from height {retained_from} on; \
         headers and certificates are kept (getlightblock, getfinalityproof)"
    )
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
                "stake": stake_json(tx.stake.as_ref()),
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

/// A transaction's staking action for `getblock`: `null` for a plain transfer.
fn stake_json(stake: Option<&Stake>) -> Value {
    match stake {
        None => Value::Null,
        Some(Stake::Register {
            public_key,
            reward_address,
            ..
        }) => json!({
            "register": { "public_key": public_key.to_string(), "reward_address": reward_address.to_string() },
        }),
        Some(Stake::Deregister { stake }) => json!({ "deregister": stake.to_string() }),
    }
}

fn decode_transaction(hex_text: &str) -> Result<Transaction, ErrorObjectOwned> {
    crate::wire::decode_raw_transaction(hex_text).map_err(|e| error(INVALID_PARAMS, e.to_string()))
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

    light::register(&mut m);

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
        let (tip, _) = s.store.tip().map_err(internal)?;
        // Collateral that the next block may not spend is not offered to wallets.
        let locked = |outpoint: &OutPoint| -> Result<bool, ErrorObjectOwned> {
            Ok(s.store
                .stake(outpoint)
                .map_err(internal)?
                .is_some_and(|r| r.unlock_height.is_none_or(|u| u > tip + 1)))
        };
        let mut spendable = Vec::with_capacity(unspent.len());
        for (outpoint, output) in unspent {
            if !locked(&outpoint)? {
                spendable.push((outpoint, output));
            }
        }
        let pool = s.mempool.lock().expect("mempool lock");
        Ok(Value::Array(
            spendable
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

    // `subscribe ["newBlocks"]` (WebSocket): one `subscription` notification per block
    // finalized here. A subscriber whose connection buffer is full, or that falls
    // NEW_BLOCKS_BUFFER blocks behind, is dropped with an error notification.
    m.register_subscription(
        "subscribe",
        "subscription",
        "unsubscribe",
        |p, pending, s, _| async move {
            let topic: String = match param(&p, "topic") {
                Ok(topic) => topic,
                Err(err) => {
                    pending.reject(err).await;
                    return Ok(());
                }
            };
            if topic != "newBlocks" {
                let known = r#"the only subscription is "newBlocks""#;
                pending
                    .reject(error(INVALID_PARAMS, format!("unknown subscription {topic:?}: {known}")))
                    .await;
                return Ok(());
            }
            let mut blocks = s.new_blocks.subscribe();
            let mut sink = pending.accept().await.map_err(|e| e.to_string())?;
            loop {
                tokio::select! {
                    _ = sink.closed() => return Ok(()),
                    next = blocks.recv() => match next {
                        Ok(block) => {
                            let message = serde_json::value::to_raw_value(&block).map_err(|e| e.to_string())?;
                            if sink.try_send(message).is_err() {
                                return Err("the subscriber does not keep up; dropped".into());
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            return Err(format!("the subscriber fell {n} blocks behind; dropped").into());
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    },
                }
            }
        },
    )
    .expect(ok);

    m.register_blocking_method("getevidence", |p, s, _| -> RpcResult {
        let from: u64 = p.parse::<(u64,)>().map(|(h,)| h).unwrap_or(0);
        let items = s.store.evidence(from, 1000).map_err(internal)?;
        let list = items
            .into_iter()
            .filter_map(|(height, bytes)| {
                let evidence: Evidence = codec::decode(&bytes, 1 << 16).ok()?;
                Some(evidence_json(height, &evidence))
            })
            .collect();
        Ok(Value::Array(list))
    })
    .expect(ok);

    m
}

/// Evidence as JSON, for `getevidence` and for the node's equivocation log line (so the two
/// read alike).
pub fn evidence_json(height: u64, evidence: &Evidence) -> serde_json::Value {
    let vote = |v: &Vote| {
        json!({
            "kind": format!("{:?}", v.kind).to_lowercase(),
            "height": v.height, "round": v.round,
            "block_hash": v.block_hash.map(|h| h.to_string()),
            "validator": v.validator.to_string(), "signature": v.signature.to_string(),
        })
    };
    let proposal = |p: &Proposal| {
        json!({
            "height": p.height, "round": p.round, "block_hash": p.block_hash.to_string(),
            "proposer": p.proposer.to_string(), "signature": p.signature.to_string(),
        })
    };
    match evidence {
        Evidence::DoubleVote { first, second } => json!({
            "type": "double_vote", "height": height, "validator": first.validator.to_string(),
            "first": vote(first), "second": vote(second),
        }),
        Evidence::DoubleProposal { first, second } => json!({
            "type": "double_proposal", "height": height, "validator": first.proposer.to_string(),
            "first": proposal(first), "second": proposal(second),
        }),
    }
}

/// Starts the RPC server on `addr` (HTTP and WebSocket on one port).
pub async fn serve(
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> anyhow::Result<(SocketAddr, ServerHandle)> {
    let middleware = tower::ServiceBuilder::new().layer(MetricsLayer(shared.clone()));
    let config = ServerConfig::builder()
        .max_request_body_size(1 << 20)
        .max_connections(256)
        // WebSocket too, for subscriptions: a few per connection, and a bounded buffer of
        // outgoing messages per connection (a full one drops the subscription).
        .max_subscriptions_per_connection(4)
        .set_message_buffer_capacity(64)
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
        if request.method() != http::Method::GET {
            return Box::pin(self.inner.call(request));
        }
        let shared = self.shared.clone();
        match request.uri().path() {
            "/metrics" => {
                shared.metrics.refresh_store(&shared.store);
                let text = shared.metrics.encode();
                let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                Box::pin(async move { Ok(respond(200, content_type, HttpBody::from(text))) })
            }
            "/dashboard" => Box::pin(async move {
                let page = crate::dashboard::page(&shared).await;
                Ok(respond(
                    200,
                    "text/html; charset=utf-8",
                    HttpBody::from(page),
                ))
            }),
            "/dashboard/state" => Box::pin(async move {
                Ok(match crate::dashboard::snapshot(&shared).await {
                    Ok(state) => {
                        respond(200, "application/json", HttpBody::from(state.to_string()))
                    }
                    Err(err) => respond(500, "text/plain", HttpBody::from(err)),
                })
            }),
            "/events" => Box::pin(async move {
                Ok(match crate::dashboard::open_events(shared) {
                    Some(body) => respond(200, "text/event-stream", HttpBody::new(body)),
                    None => respond(503, "text/plain", HttpBody::from("too many event streams")),
                })
            }),
            _ => Box::pin(self.inner.call(request)),
        }
    }
}

/// A response with `status`, `content_type` and `body`, never cached.
fn respond(status: u16, content_type: &'static str, body: HttpBody) -> HttpResponse {
    let mut response = HttpResponse::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}
/// `getvalidators` without a height: see [`validators_json`].
fn current_validators(s: &Shared) -> RpcResult {
    let (tip, _) = s.store.tip().map_err(internal)?;
    let next = s.store.validator_set(tip + 1).map_err(internal)?;
    let after = s
        .store
        .validator_set(tip + ACTIVATION_DELAY)
        .map_err(internal)?;
    let stakes = s.store.stakes().map_err(internal)?;
    Ok(validators_json(tip, &next, &after, &stakes))
}

/// `getvalidators`: the members of the set of `tip + 1` (status `active`, or `leaving` with
/// the `effective_height` from which they no longer vote) followed by the keys entering at
/// `tip + 2` (status `entering`, not yet in the next height's set). Members backed by
/// collateral name their staking output (`stake`), its `owner` and, once deregistered, the
/// `unlock_height` of the collateral; genesis validators have `stake: null`.
fn validators_json(
    tip: u64,
    next: &ValidatorSet,
    after: &ValidatorSet,
    stakes: &[(OutPoint, StakeRecord)],
) -> Value {
    let effective = tip + ACTIVATION_DELAY;
    // A key may have an unbonding stake and, re-registered, a bonded one: show the bonded.
    let stake_of = |key: &PublicKey| {
        stakes
            .iter()
            .filter(|(_, r)| r.public_key == *key)
            .min_by_key(|(_, r)| r.unlock_height.is_some())
    };
    let entry = |v: &Validator, status: &str| {
        let mut entry = json!({
            "id": hex::encode(&v.public_key.as_bytes()[..8]),
            "public_key": v.public_key.to_string(),
            "weight": v.weight,
            "reward_address": v.reward_address.to_string(),
            "status": status,
            "stake": null,
        });
        if status != "active" {
            entry["effective_height"] = json!(effective);
        }
        if let Some((outpoint, record)) = stake_of(&v.public_key) {
            entry["stake"] = json!(outpoint.to_string());
            entry["owner"] = json!(record.owner.to_string());
            if let Some(unlock) = record.unlock_height {
                entry["unlock_height"] = json!(unlock);
            }
        }
        entry
    };
    let members = next.validators().iter().map(|v| {
        let status = if after.get(&v.public_key).is_some() {
            "active"
        } else {
            "leaving"
        };
        entry(v, status)
    });
    let entering = after
        .validators()
        .iter()
        .filter(|v| next.get(&v.public_key).is_none())
        .map(|v| entry(v, "entering"));
    Value::Array(members.chain(entering).collect())
}

#[cfg(test)]
mod tests;
