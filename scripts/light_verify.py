#!/usr/bin/env python3
"""An independent TIME Coin light-client verifier, written from docs/PROTOCOL.md alone.

Needs Python 3.11 and two packages from PyPI: `pynacl` (Ed25519) and `blake3`.

  python3 scripts/light_verify.py --vectors docs/protocol-vectors.json
      Recomputes every test vector it can from its inputs and exits 0 printing
      `vectors: N checked`, or non-zero naming the first mismatch.

  python3 scripts/light_verify.py --rpc http://127.0.0.1:PORT --genesis genesis.json [--to H]
      Walks heights 1..tip (or H) of a live node over JSON-RPC, trusting only the genesis file:
      every header hash, every certificate signature and its quorum, every validator-set
      hand-over, every transaction's inclusion path. Exits 0 printing one summary line, or
      non-zero naming the height and the first failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

# Every layout, and the light-block check, from the protocol module beside this script.
from timecoin_protocol import *  # noqa: F401,F403

# --------------------------------------------------------------------------------------------
# --vectors

class Checker:
    def __init__(self):
        self.count = 0

    def eq(self, what: str, got, expected):
        if got != expected:
            g = got.hex() if isinstance(got, bytes) else got
            e = expected.hex() if isinstance(expected, bytes) else expected
            raise Mismatch(f"{what}: computed {g}, vector says {e}")
        self.count += 1


def run_vectors(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        v = json.load(f)
    c = Checker()
    chain = v["chain_id"]

    for i, k in enumerate(v["keys"]):
        w = f"keys[{i}]"
        seed = unhex(k["seed"], 32, w)
        pk = bytes(SigningKey(seed).verify_key)
        c.eq(f"{w}.public_key", pk.hex(), k["public_key"])
        c.eq(f"{w}.address_preimage", parts(b"timecoin/address/v1", pk).hex(), k["address_preimage"])
        c.eq(f"{w}.address_bytes", address_of(pk).hex(), k["address_bytes"])
        c.eq(f"{w}.checksum_preimage",
             parts(b"timecoin/address-checksum/v1", address_of(pk)).hex(), k["checksum_preimage"])
        c.eq(f"{w}.checksum", address_checksum(address_of(pk)).hex(), k["checksum"])
        c.eq(f"{w}.address", address_text(address_of(pk)), k["address"])
        c.eq(f"{w}.address parses", parse_address(k["address"]), address_of(pk))

    for i, d in enumerate(v["vote_sign_digests"]):
        w = f"vote_sign_digests[{i}]"
        bh = None if d["block_hash"] is None else unhex(d["block_hash"], 32, w)
        pre = vote_preimage(d["chain_id"], d["kind"], d["height"], d["round"], bh)
        c.eq(f"{w}.preimage", pre.hex(), d["preimage"])
        c.eq(f"{w}.digest", blake(pre).hex(), d["digest"])

    for i, d in enumerate(v["proposal_sign_digests"]):
        w = f"proposal_sign_digests[{i}]"
        pre = proposal_preimage(d["chain_id"], d["height"], d["round"], d["valid_round"],
                                unhex(d["block_hash"], 32, w))
        c.eq(f"{w}.preimage", pre.hex(), d["preimage"])
        c.eq(f"{w}.digest", blake(pre).hex(), d["digest"])
        key = SigningKey(unhex(d["signer_seed"], 32, w))
        p = d["signed"]
        c.eq(f"{w}.signed.proposer", bytes(key.verify_key).hex(), p["proposer"])
        c.eq(f"{w}.signed.signature", key.sign(blake(pre)).signature.hex(), p["signature"])
        c.eq(f"{w}.cbor", c_proposal(p).hex(), d["cbor"])

    for i, d in enumerate(v["signed_votes"]):
        w = f"signed_votes[{i}]"
        vote = d["vote"]
        bh = None if vote["block_hash"] is None else unhex(vote["block_hash"], 32, w)
        digest = blake(vote_preimage(chain, vote["kind"], vote["height"], vote["round"], bh))
        c.eq(f"{w}.digest", digest.hex(), d["digest"])
        key = SigningKey(unhex(d["seed"], 32, w))
        c.eq(f"{w}.vote.validator", bytes(key.verify_key).hex(), vote["validator"])
        c.eq(f"{w}.vote.signature", key.sign(digest).signature.hex(), vote["signature"])
        c.eq(f"{w} verifies", verify_signature(bytes(key.verify_key), digest,
                                               unhex(vote["signature"], 64, w)), True)
        c.eq(f"{w}.cbor", c_vote(vote).hex(), d["cbor"])

    sets = {}
    for name in ("validator_set", "next_validator_set"):
        d = v[name]
        members = parse_set(d["members"], what=name)
        sets[name] = members
        c.eq(f"{name}.members order", [m[0].hex() for m in members],
             [m["public_key"] for m in d["members"]])
        c.eq(f"{name}.total_weight", sum(m[1] for m in members), d["total_weight"])
        c.eq(f"{name}.preimage", set_preimage(members).hex(), d["preimage"])
        c.eq(f"{name}.hash", set_hash(members).hex(), d["hash"])
    members = sets["validator_set"]

    for i, d in enumerate(v["proposers"]):
        w = f"proposers[{i}]"
        pre = parts(b"timecoin/proposer/v1", u64(d["height"]))
        c.eq(f"{w}.seed_preimage", pre.hex(), d["seed_preimage"])
        c.eq(f"{w}.seed", blake(pre).hex(), d["seed"])
        ticket, first, index = proposer_index(members, d["height"], d["round"])
        c.eq(f"{w}.ticket", ticket, d["ticket"])
        c.eq(f"{w}.first_index", first, d["first_index"])
        c.eq(f"{w}.index", index, d["index"])
        c.eq(f"{w}.proposer", members[index][0].hex(), d["proposer"])

    for i, d in enumerate(v["quorum"]):
        c.eq(f"quorum[{i}]", is_quorum(d["signed_weight"], d["total_weight"]), d["quorum"])

    for i, d in enumerate(v["transactions"]):
        w = f"transactions[{i}] ({d['name']})"
        tx = d["transaction"]
        c.eq(f"{w}.txid_preimage", txid_preimage(tx).hex(), d["txid_preimage"])
        c.eq(f"{w}.txid", txid(tx).hex(), d["txid"])
        c.eq(f"{w}.full_hash_preimage", full_preimage(tx).hex(), d["full_hash_preimage"])
        c.eq(f"{w}.full_hash", full_hash(tx).hex(), d["full_hash"])
        pre = sign_preimage(tx, chain)
        c.eq(f"{w}.sign_digest_preimage", pre.hex(), d["sign_digest_preimage"])
        c.eq(f"{w}.sign_digest", blake(pre).hex(), d["sign_digest"])
        for j, inp in enumerate(tx["inputs"]):
            key = SigningKey(unhex(d["signer_seeds"][j], 32, w))
            c.eq(f"{w}.inputs[{j}].public_key", bytes(key.verify_key).hex(), inp["public_key"])
            c.eq(f"{w}.inputs[{j}].signature", key.sign(blake(pre)).signature.hex(), inp["signature"])
        cbor = c_transaction(tx)
        c.eq(f"{w}.cbor", cbor.hex(), d["cbor"])
        c.eq(f"{w}.encoded_len", len(cbor), d["encoded_len"])

    d = v["possession"]
    pk = unhex(d["public_key"], 32, "possession.public_key")
    pre = possession_preimage(chain, pk, parse_address(d["owner"]),
                              parse_address(d["reward_address"]),
                              outpoint_bytes(d["first_input"], "possession.first_input"))
    c.eq("possession.preimage", pre.hex(), d["preimage"])
    c.eq("possession.digest", blake(pre).hex(), d["digest"])
    c.eq("possession.public_key", bytes(SigningKey(unhex(d["consensus_seed"], 32, "seed")).verify_key), pk)
    c.eq("possession.proof verifies", verify_signature(pk, blake(pre), unhex(d["proof"], 64, "proof")), True)
    registration = next(t["transaction"] for t in v["transactions"] if t["name"] == "registration")
    c.eq("possession.proof in the registration", registration["stake"]["Register"]["proof"], d["proof"])

    for i, d in enumerate(v["merkle_roots"]):
        leaves = [unhex(x, 32, f"merkle_roots[{i}]") for x in d["leaves"]]
        c.eq(f"merkle_roots[{i}] ({len(leaves)} leaves)", merkle_root(leaves).hex(), d["root"])

    d = v["merkle_paths"]
    leaves = [unhex(x, 32, "merkle_paths.leaves") for x in d["leaves"]]
    c.eq("merkle_paths.leaf_hash_preimage_0",
         parts(b"timecoin/merkle-leaf/v1", leaves[0]).hex(), d["leaf_hash_preimage_0"])
    c.eq("merkle_paths.leaf_hashes", [leaf_hash(x).hex() for x in leaves], d["leaf_hashes"])
    lh = [leaf_hash(x) for x in leaves]
    c.eq("merkle_paths.node_preimage_0_1", parts(b"timecoin/merkle-node/v1", lh[0], lh[1]).hex(),
         d["node_preimage_0_1"])
    c.eq("merkle_paths.node_0_1", node_hash(lh[0], lh[1]).hex(), d["node_0_1"])
    c.eq("merkle_paths.root", merkle_root(leaves).hex(), d["root"])
    for i, p in enumerate(d["paths"]):
        leaf = unhex(p["leaf"], 32, "leaf")
        c.eq(f"merkle_paths.paths[{i}].root", (check_path(leaf, p["path"], "path") or b"").hex(), d["root"])
        # A path must fail for any other position or with a sibling too many.
        moved = dict(p["path"], index=(p["path"]["index"] + 1) % p["path"]["leaf_count"])
        c.eq(f"merkle_paths.paths[{i}] moved", check_path(leaf, moved, "path") == unhex(d["root"], 32, "root"), False)
        longer = dict(p["path"], siblings=p["path"]["siblings"] + ["00" * 32])
        c.eq(f"merkle_paths.paths[{i}] longer", check_path(leaf, longer, "path"), None)

    for i, d in enumerate(v["subsidy"]):
        c.eq(f"subsidy[{i}] (height {d['height']})", subsidy(d["height"]), d["subsidy"])

    for i, d in enumerate(v["reward_outpoints"]):
        w = f"reward_outpoints[{i}]"
        pre = b"TIMECOIN/RWRD/01" + u64(d["height"])
        c.eq(f"{w}.preimage", pre.hex(), d["preimage"])
        c.eq(f"{w}.txid", blake(pre).hex(), d["txid"])
        c.eq(f"{w}.outpoint", d["outpoint"], {"txid": blake(pre).hex(), "index": d["index"]})
        c.eq(f"{w}.outpoint_bytes", outpoint_bytes(d["outpoint"], w).hex(), d["outpoint_bytes"])

    # The light block: the same checks as the --rpc walk, then its body and rewards.
    d = v["block"]
    lb = d["light_block"]
    header = lb["header"]
    c.eq("block.header_preimage", header_preimage(header).hex(), d["header_preimage"])
    try:
        block_hash, signers, nexts, signed = check_light_block(chain, lb, members, lb["height"])
    except Mismatch as e:
        raise Mismatch(f"block.light_block: {e}") from None
    c.eq("block.light_block.hash", block_hash.hex(), lb["hash"])
    c.eq("block.signed_weight", signed, d["signed_weight"])
    c.eq("block.next_validators", nexts, sets["next_validator_set"])
    c.eq("block.header.proposer",
         members[proposer_index(members, header["height"], header["round"])[2]][0].hex(),
         header["proposer"])
    body = [t for t in v["transactions"] if t["txid"] in d["transactions"]]
    c.eq("block.transactions", [t["txid"] for t in body], d["transactions"])
    c.eq("block.header.tx_root", merkle_root([txid(t["transaction"]) for t in body]).hex(), header["tx_root"])
    leaves = [full_hash(t["transaction"]) for t in body]
    c.eq("block.header.full_tx_root", merkle_root(leaves).hex(), header["full_tx_root"])
    for i, p in enumerate(d["tx_paths"]):
        c.eq(f"block.tx_paths[{i}]", (check_path(leaves[i], p, "path") or b"").hex(), header["full_tx_root"])
    total = subsidy(header["height"]) + sum(d["fees"])
    c.eq("block.reward_total", total, d["reward_total"])
    expected = reward_outputs(members, unhex(header["proposer"], 32, "proposer"), total)
    listed = [(parse_address(r["output"]["address"]), r["output"]["amount"]) for r in d["rewards"]]
    c.eq("block.rewards", [(a.hex(), n) for a, n in expected], [(a.hex(), n) for a, n in listed])
    for i, (a, n) in enumerate(listed):
        r = d["rewards"][i]
        c.eq(f"block.rewards[{i}].output_bytes", (a + u64(n)).hex(), r["output_bytes"])
        c.eq(f"block.rewards[{i}].leaf_preimage", parts(b"timecoin/reward-leaf/v1", a + u64(n)).hex(), r["leaf_preimage"])
        c.eq(f"block.rewards[{i}].leaf", reward_leaf(a, n).hex(), r["leaf"])
    c.eq("block.header.rewards_root", merkle_root([reward_leaf(a, n) for a, n in listed]).hex(), header["rewards_root"])
    short = dict(lb, certificate=d["short_certificate"])
    try:
        check_light_block(chain, short, members, lb["height"])
        raise Mismatch("block.short_certificate: accepted, but it is below two thirds")
    except Mismatch as e:
        if "below two thirds" not in str(e) or "accepted" in str(e):
            raise
        c.count += 1

    d = v["state"]
    c.eq("state.empty_root", State().root().hex(), d["empty_root"])
    for name in ("output_entry", "stake_entry"):
        e = d[name]
        op = e["entry"]
        outpoint = outpoint_bytes(op["outpoint"], name)
        record = unhex(op["record"], 28 if op["kind"] == 0 else 88, name)
        c.eq(f"state.{name}.preimage", entry_preimage(op["kind"], outpoint, record).hex(), e["preimage"])
        c.eq(f"state.{name}.expansion_prefix", expansion(op["kind"], outpoint, record)[:64].hex(),
             e["expansion_prefix"])
        single = State()
        single.change(True, op["kind"], outpoint, record)
        c.eq(f"state.{name}.root", single.root().hex(), e["root"])
    reg = next(t["transaction"] for t in v["transactions"] if t["name"] == "registration")
    r = reg["stake"]["Register"]
    c.eq("state.stake_entry.record", stake_record_bytes(
        unhex(r["public_key"], 32, "pk"), parse_address(r["reward_address"]),
        parse_address(reg["outputs"][0]["address"]), reg["outputs"][0]["amount"], None).hex(),
        d["stake_entry"]["entry"]["record"])
    state = State()
    for i, step in enumerate(d["steps"]):
        for op in step["ops"]:
            state.change(op["op"] == "insert", op["kind"], outpoint_bytes(op["outpoint"], "op"),
                         unhex(op["record"], None, "record"))
        c.eq(f"state.steps[{i}] ({step['name']}).root", state.root().hex(), step["root"])
    c.eq("block.header.state_root = state after block 7", d["steps"][1]["root"],
         v["block"]["light_block"]["header"]["state_root"])
    # The changes themselves follow from the transactions, by the transition rule.
    txs = {t["txid"]: t["transaction"] for t in v["transactions"]}
    allocations = v["genesis"]["genesis"]["allocations"]
    alloc = {(reward_outpoint_txid(0) + u32(i)): parse_address(o["address"]) + u64(o["amount"])
             for i, o in enumerate(allocations)}
    ops = lambda listed: sorted((o["op"], o["kind"], outpoint_bytes(o["outpoint"], "op").hex(), o["record"]) for o in listed)
    def created(tid, tx):
        return [("insert", 0, (unhex(tid, 32, "txid") + u32(j)).hex(),
                 (parse_address(o["address"]) + u64(o["amount"])).hex()) for j, o in enumerate(tx["outputs"])]
    expected = [("insert", 0, k.hex(), r.hex()) for k, r in alloc.items()]
    c.eq("state.steps[0] changes", sorted(expected), ops(d["steps"][0]["ops"]))
    block = v["block"]
    expected = []
    for tid in block["transactions"]:
        tx = txs[tid]
        for inp in tx["inputs"]:
            prev = outpoint_bytes(inp["prev"], "prev")
            expected.append(("remove", 0, prev.hex(), alloc[prev].hex()))
        expected += created(tid, tx)
    for i, r in enumerate(block["rewards"]):
        expected.append(("insert", 0, (reward_outpoint_txid(7) + u32(i)).hex(), r["output_bytes"]))
    reg_id = next(t["txid"] for t in v["transactions"] if t["name"] == "registration")
    bonded = d["stake_entry"]["entry"]["record"]
    stake_at = (unhex(reg_id, 32, "txid") + u32(0)).hex()
    expected.append(("insert", 1, stake_at, bonded))
    c.eq("state.steps[1] changes", sorted(expected), ops(d["steps"][1]["ops"]))
    dereg_id = next(t["txid"] for t in v["transactions"] if t["name"] == "deregistration")
    dereg = txs[dereg_id]
    spent = outpoint_bytes(dereg["inputs"][0]["prev"], "prev")
    spent_output = reg["outputs"][dereg["inputs"][0]["prev"]["index"]]
    unlock = 9 + 2 + DEFAULT_UNBONDING_BLOCKS
    expected = [("remove", 0, spent.hex(), (parse_address(spent_output["address"]) + u64(spent_output["amount"])).hex()),
                *created(dereg_id, dereg),
                ("remove", 1, stake_at, bonded),
                ("insert", 1, stake_at, bytes.fromhex(bonded)[:80].hex() + u64(unlock).hex())]
    c.eq("state.steps[2] changes", sorted(expected), ops(d["steps"][2]["ops"]))

    # §17: the snapshot of the state after block 7 — its records, chunks, manifest and id.
    live = {}
    for step in d["steps"][:2]:
        for op in step["ops"]:
            key = (op["kind"], outpoint_bytes(op["outpoint"], "op"))
            if op["op"] == "insert":
                live[key] = unhex(op["record"], None, "record")
            else:
                live.pop(key, None)
    records = [bytes([kind]) + outpoint + record for (kind, outpoint), record in sorted(live.items())]
    sn = v["snapshot"]
    m = sn["manifest"]
    c.eq("snapshot.records", [r.hex() for r in records], sn["records"])
    per = m["chunk_records"]
    chunks = [b"".join(records[i:i + per]) for i in range(0, len(records), per)]
    for i, chunk in enumerate(chunks):
        c.eq(f"snapshot.chunks[{i}].bytes", chunk.hex(), sn["chunks"][i]["bytes"])
        c.eq(f"snapshot.chunks[{i}].hash_preimage", parts(b"TIMECOIN/CHNK/01", chunk).hex(),
             sn["chunks"][i]["hash_preimage"])
        c.eq(f"snapshot.manifest.chunks[{i}]", blake(parts(b"TIMECOIN/CHNK/01", chunk)).hex(), m["chunks"][i])
    c.eq("snapshot.manifest.records", len(records), m["records"])
    c.eq("snapshot.manifest.state_root = state after block 7", d["steps"][1]["root"], m["state_root"])
    c.eq("snapshot.manifest.block_hash = block 7", v["block"]["light_block"]["hash"], m["block_hash"])
    cbor = c_map([
        ("format", c_uint(m["format"])),
        ("chain_id", c_text(m["chain_id"])),
        ("height", c_uint(m["height"])),
        ("block_hash", c_bytes(unhex(m["block_hash"], 32, "block_hash"))),
        ("state_root", c_bytes(unhex(m["state_root"], 32, "state_root"))),
        ("chunk_records", c_uint(per)),
        ("records", c_uint(m["records"])),
        ("chunks", c_array([c_bytes(unhex(h, 32, "chunk hash")) for h in m["chunks"]])),
    ])
    c.eq("snapshot.manifest_cbor", cbor.hex(), sn["manifest_cbor"])
    c.eq("snapshot.id_preimage", parts(b"TIMECOIN/SNAP/01", cbor).hex(), sn["id_preimage"])
    c.eq("snapshot.id", blake(parts(b"TIMECOIN/SNAP/01", cbor)).hex(), sn["id"])
    restored = State()
    for r in records:
        restored.change(True, r[0], r[1:37], r[37:])
    c.eq("snapshot: the records hash to the manifest's state root", restored.root().hex(), m["state_root"])

    d = v["genesis"]
    g = d["genesis"]
    cbor = c_genesis(g)
    c.eq("genesis.cbor", cbor.hex(), d["cbor"])
    c.eq("genesis.hash_preimage", parts(b"timecoin/genesis/v1", cbor).hex(), d["hash_preimage"])
    c.eq("genesis.hash", blake(parts(b"timecoin/genesis/v1", cbor)).hex(), d["hash"])
    gh = genesis_header(g)
    c.eq("genesis.block_header", gh, d["block_header"])
    c.eq("genesis.block_header_preimage", header_preimage(gh).hex(), d["block_header_preimage"])
    c.eq("genesis.block_hash", header_hash(gh).hex(), d["block_hash"])
    c.eq("genesis set = validator_set", genesis_set(g), members)

    print(f"vectors: {c.count} checked")
    return 0


# --------------------------------------------------------------------------------------------
# --rpc

class RpcError(Exception):
    pass


class Rpc:
    def __init__(self, url: str):
        self.url = url
        self.next_id = 0

    def call(self, method: str, params):
        self.next_id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method,
                           "params": params}).encode()
        request = urllib.request.Request(self.url, data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.load(response)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RpcError(f"{method} {params}: {e}") from None
        if answer.get("error") is not None:
            raise RpcError(f"{method} {params}: {answer['error'].get('message', answer['error'])}")
        return answer["result"]


def run_rpc(url: str, genesis_path: str, to: int | None) -> int:
    with open(genesis_path, encoding="utf-8") as f:
        genesis = json.load(f)
    chain = genesis["chain_id"]
    trusted = genesis_set(genesis)
    prev_hash = header_hash(genesis_header(genesis))
    rpc = Rpc(url)
    try:
        info = rpc.call("getblockchaininfo", [])
        if info["chain_id"] != chain:
            print(f"light_verify: the node runs chain {info['chain_id']!r}, the genesis is {chain!r}")
            return 1
        g0 = rpc.call("getblockhash", [0])
        if g0 != prev_hash.hex():
            print(f"light_verify: height 0: the node's genesis block is {g0}, the genesis file's is {prev_hash.hex()}")
            return 1
    except RpcError as e:
        print(f"light_verify: {e}")
        return 2
    tip = info["height"]
    last = tip if to is None else to
    if last > tip:
        print(f"light_verify: --to {last} is above the node's tip {tip}")
        return 1
    if last < 1:
        print("light_verify: nothing to verify (the chain has only its genesis block)")
        return 1
    changes = transactions = 0
    for height in range(1, last + 1):
        try:
            lb = rpc.call("getlightblock", [height])
            block_hash, signers, nexts, _ = check_light_block(chain, lb, trusted, height)
            header = lb["header"]
            if unhex(header["prev_hash"], 32, "prev_hash") != prev_hash:
                raise Mismatch(f"prev_hash {header['prev_hash']} is not block {height - 1} ({prev_hash.hex()})")
            proposer = signers[proposer_index(signers, height, header["round"])[2]][0]
            if unhex(header["proposer"], 32, "proposer") != proposer:
                raise Mismatch(f"proposer {header['proposer']} is not the set's proposer "
                               f"{proposer.hex()} of round {header['round']}")
            block = rpc.call("getblock", [height])
            if block["hash"] != block_hash.hex():
                raise Mismatch(f"getblock says hash {block['hash']}, the light block's header hashes to {block_hash.hex()}")
            txids = [unhex(t["txid"], 32, "getblock txid") for t in block["transactions"]]
            if merkle_root(txids).hex() != header["tx_root"]:
                raise Mismatch("getblock's txids do not give the header's tx_root")
            rewards = [(parse_address(r["address"]), r["amount"]) for r in block["rewards"]]
            if merkle_root([reward_leaf(a, n) for a, n in rewards]).hex() != header["rewards_root"]:
                raise Mismatch("getblock's rewards do not give the header's rewards_root")
            total = subsidy(height) + sum(t["fee"] for t in block["transactions"])
            if reward_outputs(signers, proposer, total) != rewards:
                raise Mismatch(f"rewards are not the split of subsidy {subsidy(height)} + fees")
            for t in block["transactions"]:
                check_transaction(rpc, chain, t["txid"], height, block_hash, header)
                transactions += 1
        except (Mismatch, KeyError, TypeError, RpcError) as e:
            return failed(f"light_verify: height {height}", e)
        if set_hash(nexts) != set_hash(trusted):
            changes += 1
        trusted, prev_hash = nexts, block_hash
    print(f"light_verify: heights 1..{last} verified ({changes} set changes, {transactions} transactions)")
    return 0


def failed(where: str, error: Exception) -> int:
    """Prints the first failure, under `where`; the exit code: 2 if the node did not answer,
    1 if what it (or the vector file) said does not check out."""
    if isinstance(error, (KeyError, TypeError)):
        print(f"{where}: malformed input ({type(error).__name__}: {error})")
    else:
        print(f"{where}: {error}")
    return 2 if isinstance(error, RpcError) else 1


def check_transaction(rpc: Rpc, chain: str, txid_hex: str, height: int, block_hash: bytes, header):
    proof = rpc.call("gettxproof", [txid_hex])
    tx = proof["transaction"]
    what = f"transaction {txid_hex}"
    if txid(tx).hex() != txid_hex or proof["txid"] != txid_hex:
        raise Mismatch(f"{what}: its fields hash to txid {txid(tx).hex()}")
    if proof["height"] != height or proof["block_hash"] != block_hash.hex():
        raise Mismatch(f"{what}: proof is for height {proof['height']} block {proof['block_hash']}")
    if proof["full_tx_root"] != header["full_tx_root"]:
        raise Mismatch(f"{what}: proof names full_tx_root {proof['full_tx_root']}, not the header's")
    root = check_path(full_hash(tx), proof["path"], f"{what} path")
    if root is None or root.hex() != header["full_tx_root"]:
        raise Mismatch(f"{what}: its path does not lead to the header's full_tx_root")
    digest = blake(sign_preimage(tx, chain))
    for i, inp in enumerate(tx["inputs"]):
        if not verify_signature(unhex(inp["public_key"], 32, "public_key"), digest,
                                unhex(inp["signature"], 64, "signature")):
            raise Mismatch(f"{what}: input {i}'s signature does not verify")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--vectors", metavar="FILE", help="check docs/protocol-vectors.json")
    mode.add_argument("--rpc", metavar="URL", help="walk a live node's chain")
    parser.add_argument("--genesis", metavar="FILE", help="the genesis.json to trust (with --rpc)")
    parser.add_argument("--to", type=int, metavar="HEIGHT", help="last height (default: the tip)")
    args = parser.parse_args(argv)
    if args.vectors:
        try:
            return run_vectors(args.vectors)
        except (Mismatch, KeyError, TypeError) as e:
            return failed("vectors", e)
    if not args.genesis:
        parser.error("--rpc needs --genesis")
    return run_rpc(args.rpc, args.genesis, args.to)


if __name__ == "__main__":
    sys.exit(main())
