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

try:
    import blake3
    from nacl.exceptions import BadSignatureError
    from nacl.signing import SigningKey, VerifyKey
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"light_verify: needs the PyPI packages pynacl and blake3 ({e})")

COIN = 100_000_000
PROTOCOL_VERSION = 1
U64_MAX = (1 << 64) - 1
DEFAULT_MIN_OUTPUT = 10_000
DEFAULT_UNBONDING_BLOCKS = 10
LN2_Q64 = 0xB17217F7D1CF79AB


class Mismatch(Exception):
    """A check that failed; the message names it."""


# --------------------------------------------------------------------------------------------
# Primitives

def blake(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def parts(*items: bytes) -> bytes:
    """The preimage of a length-prefixed hash: each part after its length as u64 BE."""
    return b"".join(len(p).to_bytes(8, "big") + p for p in items)


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def unhex(text: str, size: int | None, what: str) -> bytes:
    if not isinstance(text, str):
        raise Mismatch(f"{what}: expected a hex string, got {text!r}")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise Mismatch(f"{what}: not hex: {text!r}") from None
    if size is not None and len(raw) != size:
        raise Mismatch(f"{what}: expected {size} bytes, got {len(raw)}")
    return raw


def uint(value, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise Mismatch(f"{what}: expected a u{bits}, got {value!r}")
    return value


def chain_prefix(tag: bytes, chain_id: str) -> bytes:
    assert len(tag) == 16
    raw = chain_id.encode()
    return tag + u16(len(raw)) + raw


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
        return True
    except (BadSignatureError, ValueError, TypeError):
        return False


# --------------------------------------------------------------------------------------------
# Addresses

def address_of(public_key: bytes) -> bytes:
    return blake(parts(b"timecoin/address/v1", public_key))[:20]


def address_checksum(address: bytes) -> bytes:
    return blake(parts(b"timecoin/address-checksum/v1", address))[:4]


def address_text(address: bytes) -> str:
    return "tc" + address.hex() + address_checksum(address).hex()


def parse_address(text: str, what: str = "address") -> bytes:
    if not isinstance(text, str) or not text.startswith("tc") or len(text) != 50:
        raise Mismatch(f"{what}: not 'tc' and 48 hex digits: {text!r}")
    raw = unhex(text[2:], 24, what)
    if address_checksum(raw[:20]) != raw[20:]:
        raise Mismatch(f"{what}: checksum does not match: {text}")
    return raw[:20]


# --------------------------------------------------------------------------------------------
# Votes, proposals, certificates

VOTE_KINDS = {"Prepare": 1, "Precommit": 2}


def vote_preimage(chain_id: str, kind: str, height: int, round_: int,
                  block_hash: bytes | None) -> bytes:
    out = chain_prefix(b"TIMECOIN/VOTE/01", chain_id) + bytes([VOTE_KINDS[kind]])
    out += u64(height) + u32(round_)
    out += b"\x00" if block_hash is None else b"\x01" + block_hash
    return out


def proposal_preimage(chain_id: str, height: int, round_: int, valid_round: int | None,
                      block_hash: bytes) -> bytes:
    out = chain_prefix(b"TIMECOIN/PROP/01", chain_id) + u64(height) + u32(round_)
    out += b"\x00" if valid_round is None else b"\x01" + u32(valid_round)
    return out + block_hash


def is_quorum(signed: int, total: int) -> bool:
    return 3 * signed >= 2 * total


# --------------------------------------------------------------------------------------------
# Validator sets

def parse_set(members_json, weight_field: str = "weight", what: str = "validator set"):
    """A list of (public key, weight, reward address) sorted by key, checked like the node."""
    if not isinstance(members_json, list) or not members_json:
        raise Mismatch(f"{what}: a set has at least one member")
    members = []
    for i, m in enumerate(members_json):
        pk = unhex(m["public_key"], 32, f"{what}[{i}].public_key")
        weight = uint(m[weight_field], 64, f"{what}[{i}].{weight_field}")
        if weight == 0:
            raise Mismatch(f"{what}[{i}]: zero weight")
        members.append((pk, weight, parse_address(m["reward_address"], f"{what}[{i}].reward_address")))
    members.sort(key=lambda v: v[0])
    for a, b in zip(members, members[1:]):
        if a[0] == b[0]:
            raise Mismatch(f"{what}: key {a[0].hex()} listed twice")
    if sum(v[1] for v in members) > U64_MAX:
        raise Mismatch(f"{what}: total weight overflows 64 bits")
    return members


def set_preimage(members) -> bytes:
    out = b"TIMECOIN/VSET/01" + u32(len(members))
    for pk, weight, reward in members:
        out += pk + u64(weight) + reward
    return out


def set_hash(members) -> bytes:
    return blake(set_preimage(members))


def proposer_index(members, height: int, round_: int) -> tuple[int, int, int]:
    """(ticket, first index, proposer index) of (height, round)."""
    seed = blake(parts(b"timecoin/proposer/v1", u64(height)))
    total = sum(v[1] for v in members)
    ticket = int.from_bytes(seed[:16], "big") % total
    acc = 0
    for first, v in enumerate(members):
        acc += v[1]
        if ticket < acc:
            break
    return ticket, first, (first + round_) % len(members)


# --------------------------------------------------------------------------------------------
# Headers

HEADER_HASHES = ("tx_root", "full_tx_root", "rewards_root", "validator_set_hash",
                 "next_validator_set_hash", "state_root")


def header_preimage(h) -> bytes:
    chain = h["chain_id"].encode()
    out = b"TIMECOIN/BLKH/03" + u32(uint(h["version"], 32, "version"))
    out += u16(len(chain)) + chain
    out += u64(uint(h["height"], 64, "height")) + u32(uint(h["round"], 32, "round"))
    out += unhex(h["prev_hash"], 32, "prev_hash") + unhex(h["proposer"], 32, "proposer")
    out += u64(uint(h["time_ms"], 64, "time_ms"))
    for field in HEADER_HASHES:
        out += unhex(h[field], 32, field)
    return out


def header_hash(h) -> bytes:
    return blake(header_preimage(h))


# --------------------------------------------------------------------------------------------
# Transactions

def outpoint_bytes(o, what: str) -> bytes:
    return unhex(o["txid"], 32, f"{what}.txid") + u32(uint(o["index"], 32, f"{what}.index"))


def txid_preimage(tx) -> bytes:
    out = b"TIMECOIN/TXID/01" + u32(len(tx["inputs"]))
    for i, inp in enumerate(tx["inputs"]):
        out += outpoint_bytes(inp["prev"], f"inputs[{i}].prev")
        out += unhex(inp["public_key"], 32, f"inputs[{i}].public_key")
    out += u32(len(tx["outputs"]))
    for i, o in enumerate(tx["outputs"]):
        out += parse_address(o["address"], f"outputs[{i}].address")
        out += u64(uint(o["amount"], 64, f"outputs[{i}].amount"))
    stake = tx.get("stake")
    if stake is not None:
        if "Register" in stake:
            r = stake["Register"]
            out += b"\x01" + unhex(r["public_key"], 32, "stake.public_key")
            out += parse_address(r["reward_address"], "stake.reward_address")
        elif "Deregister" in stake:
            out += b"\x02" + outpoint_bytes(stake["Deregister"]["stake"], "stake.stake")
        else:
            raise Mismatch(f"unknown stake action {stake!r}")
    return out


def txid(tx) -> bytes:
    return blake(txid_preimage(tx))


def full_preimage(tx) -> bytes:
    out = b"TIMECOIN/TXFL/01" + txid(tx)
    for i, inp in enumerate(tx["inputs"]):
        out += unhex(inp["signature"], 64, f"inputs[{i}].signature")
    stake = tx.get("stake")
    if stake is not None and "Register" in stake:
        proof = stake["Register"].get("proof")
        out += b"\x00" if proof is None else b"\x01" + unhex(proof, 64, "stake.proof")
    return out


def full_hash(tx) -> bytes:
    return blake(full_preimage(tx))


def sign_preimage(tx, chain_id: str) -> bytes:
    return chain_prefix(b"TIMECOIN/TXSG/01", chain_id) + txid(tx)


def possession_preimage(chain_id: str, public_key: bytes, owner: bytes, reward: bytes,
                        first_input: bytes) -> bytes:
    return chain_prefix(b"TIMECOIN/STPK/01", chain_id) + public_key + owner + reward + first_input


# --------------------------------------------------------------------------------------------
# Merkle trees

def leaf_hash(leaf: bytes) -> bytes:
    return blake(parts(b"timecoin/merkle-leaf/v1", leaf))


def node_hash(left: bytes, right: bytes) -> bytes:
    return blake(parts(b"timecoin/merkle-node/v1", left, right))


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return blake(parts(b"timecoin/merkle-empty/v1"))
    level = [leaf_hash(x) for x in leaves]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def path_root(leaf: bytes, index: int, leaf_count: int, siblings: list[bytes]) -> bytes | None:
    """The root a path leads to, or None when its shape does not fit its index and count."""
    if index >= leaf_count:
        return None
    node, at, width, it = leaf_hash(leaf), index, leaf_count, iter(siblings)
    while width > 1:
        carried = at % 2 == 0 and at + 1 == width
        if not carried:
            sibling = next(it, None)
            if sibling is None:
                return None
            node = node_hash(node, sibling) if at % 2 == 0 else node_hash(sibling, node)
        at //= 2
        width = (width + 1) // 2
    return node if next(it, None) is None else None


def check_path(leaf: bytes, path, what: str) -> bytes | None:
    index = uint(path["index"], 32, f"{what}.index")
    count = uint(path["leaf_count"], 32, f"{what}.leaf_count")
    siblings = [unhex(s, 32, f"{what}.siblings[{i}]") for i, s in enumerate(path["siblings"])]
    return path_root(leaf, index, count, siblings)


# --------------------------------------------------------------------------------------------
# Rewards

def log2_fraction_q64(m: int) -> int:
    one = 1 << 63
    result = 0
    for bit in range(63, -1, -1):
        m = (m * m) >> 63
        if m >= 2 * one:
            m >>= 1
            result |= 1 << bit
    return result


def ln_q64(x: int) -> int:
    k = x.bit_length() - 1
    frac = log2_fraction_q64(x << (63 - k))
    return k * LN2_Q64 + ((frac * LN2_Q64) >> 64)


def subsidy(height: int) -> int:
    if height == 0:
        return 0
    base = 100 * COIN
    return base + ((base * ln_q64(height)) >> 64)


def reward_outpoint_txid(height: int) -> bytes:
    return blake(b"TIMECOIN/RWRD/01" + u64(height))


def reward_leaf(address: bytes, amount: int) -> bytes:
    return blake(parts(b"timecoin/reward-leaf/v1", address + u64(amount)))


def reward_outputs(members, proposer: bytes, total: int) -> list[tuple[bytes, int]]:
    cut = total // 10
    pool = total - cut
    weight = sum(v[1] for v in members)
    amounts = [pool * v[1] // weight for v in members]
    proposer_amount = cut + pool - sum(amounts)
    keys = [v[0] for v in members]
    if proposer in keys:
        amounts[keys.index(proposer)] += proposer_amount
    out = [(v[2], a) for v, a in zip(members, amounts) if a > 0]
    if proposer not in keys and proposer_amount > 0:
        out.append((address_of(proposer), proposer_amount))
    return out


# --------------------------------------------------------------------------------------------
# The state commitment (a multiset hash: 1024 lanes of u16, summed wrapping)

LANES = 1024


def stake_record_bytes(public_key: bytes, reward: bytes, owner: bytes, amount: int,
                       unlock_height: int | None) -> bytes:
    return public_key + reward + owner + u64(amount) + u64(U64_MAX if unlock_height is None else unlock_height)


def entry_preimage(kind: int, outpoint: bytes, record: bytes) -> bytes:
    return b"TIMECOIN/STEL/01" + bytes([kind]) + outpoint + record


def expansion(kind: int, outpoint: bytes, record: bytes) -> bytes:
    return blake3.blake3(entry_preimage(kind, outpoint, record)).digest(length=2 * LANES)


class State:
    def __init__(self):
        self.lanes = [0] * LANES

    def change(self, insert: bool, kind: int, outpoint: bytes, record: bytes):
        e = expansion(kind, outpoint, record)
        sign = 1 if insert else -1
        for i in range(LANES):
            lane = e[2 * i] | e[2 * i + 1] << 8
            self.lanes[i] = (self.lanes[i] + sign * lane) & 0xFFFF

    def to_bytes(self) -> bytes:
        return b"".join(x.to_bytes(2, "little") for x in self.lanes)

    def root(self) -> bytes:
        return blake(b"TIMECOIN/STAT/01" + self.to_bytes())


# --------------------------------------------------------------------------------------------
# CBOR (serde_cbor's encoding of the node's types: maps with text keys in field order,
# fixed-size byte values as byte strings, shortest integer heads)

def cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
    raise ValueError("integer too large for CBOR")


def c_uint(n: int) -> bytes:
    return cbor_head(0, n)


def c_bytes(b: bytes) -> bytes:
    return cbor_head(2, len(b)) + b


def c_text(s: str) -> bytes:
    raw = s.encode()
    return cbor_head(3, len(raw)) + raw


def c_array(items: list[bytes]) -> bytes:
    return cbor_head(4, len(items)) + b"".join(items)


def c_map(pairs: list[tuple[str, bytes]]) -> bytes:
    return cbor_head(5, len(pairs)) + b"".join(c_text(k) + v for k, v in pairs)


C_NULL = b"\xf6"


def c_outpoint(o) -> bytes:
    return c_map([("txid", c_bytes(unhex(o["txid"], 32, "txid"))), ("index", c_uint(o["index"]))])


def c_output(o) -> bytes:
    return c_map([("address", c_bytes(parse_address(o["address"]))), ("amount", c_uint(o["amount"]))])


def c_transaction(tx) -> bytes:
    fields = [
        ("inputs", c_array([c_map([
            ("prev", c_outpoint(i["prev"])),
            ("public_key", c_bytes(unhex(i["public_key"], 32, "public_key"))),
            ("signature", c_bytes(unhex(i["signature"], 64, "signature"))),
        ]) for i in tx["inputs"]])),
        ("outputs", c_array([c_output(o) for o in tx["outputs"]])),
    ]
    stake = tx.get("stake")
    if stake is not None:
        if "Register" in stake:
            r = stake["Register"]
            proof = r.get("proof")
            body = c_map([
                ("public_key", c_bytes(unhex(r["public_key"], 32, "public_key"))),
                ("reward_address", c_bytes(parse_address(r["reward_address"]))),
                ("proof", C_NULL if proof is None else c_bytes(unhex(proof, 64, "proof"))),
            ])
            fields.append(("stake", c_map([("Register", body)])))
        else:
            body = c_map([("stake", c_outpoint(stake["Deregister"]["stake"]))])
            fields.append(("stake", c_map([("Deregister", body)])))
    return c_map(fields)


def c_vote(v) -> bytes:
    bh = v["block_hash"]
    return c_map([
        ("kind", c_text(v["kind"])),
        ("height", c_uint(v["height"])),
        ("round", c_uint(v["round"])),
        ("block_hash", C_NULL if bh is None else c_bytes(unhex(bh, 32, "block_hash"))),
        ("validator", c_bytes(unhex(v["validator"], 32, "validator"))),
        ("signature", c_bytes(unhex(v["signature"], 64, "signature"))),
    ])


def c_proposal(p) -> bytes:
    vr = p["valid_round"]
    return c_map([
        ("height", c_uint(p["height"])),
        ("round", c_uint(p["round"])),
        ("valid_round", C_NULL if vr is None else c_uint(vr)),
        ("block_hash", c_bytes(unhex(p["block_hash"], 32, "block_hash"))),
        ("proposer", c_bytes(unhex(p["proposer"], 32, "proposer"))),
        ("signature", c_bytes(unhex(p["signature"], 64, "signature"))),
    ])


def c_genesis(g) -> bytes:
    fields = [
        ("chain_id", c_text(g["chain_id"])),
        ("genesis_time_ms", c_uint(g["genesis_time_ms"])),
        ("block_interval_ms", c_uint(g["block_interval_ms"])),
        ("validators", c_array([c_map([
            ("name", c_text(v["name"])),
            ("public_key", c_bytes(unhex(v["public_key"], 32, "public_key"))),
            ("collateral", c_uint(v["collateral"])),
            ("reward_address", c_bytes(parse_address(v["reward_address"]))),
        ]) for v in g["validators"]])),
        ("allocations", c_array([c_output(o) for o in g["allocations"]])),
        ("min_fee_per_byte", c_uint(g["min_fee_per_byte"])),
    ]
    if g.get("min_output", DEFAULT_MIN_OUTPUT) != DEFAULT_MIN_OUTPUT:
        fields.append(("min_output", c_uint(g["min_output"])))
    if g.get("unbonding_blocks", DEFAULT_UNBONDING_BLOCKS) != DEFAULT_UNBONDING_BLOCKS:
        fields.append(("unbonding_blocks", c_uint(g["unbonding_blocks"])))
    return c_map(fields)


# --------------------------------------------------------------------------------------------
# Genesis

def genesis_set(genesis):
    return parse_set(genesis["validators"], "collateral", "genesis validators")


def genesis_header(genesis) -> dict:
    members = genesis_set(genesis)
    allocations = [(parse_address(o["address"]), o["amount"]) for o in genesis["allocations"]]
    empty = merkle_root([]).hex()
    vset = set_hash(members).hex()
    state = State()
    for i, (a, n) in enumerate(allocations):
        state.change(True, 0, reward_outpoint_txid(0) + u32(i), a + u64(n))
    return {
        "version": PROTOCOL_VERSION,
        "chain_id": genesis["chain_id"],
        "height": 0,
        "round": 0,
        "prev_hash": "00" * 32,
        "proposer": members[proposer_index(members, 0, 0)[2]][0].hex(),
        "time_ms": genesis["genesis_time_ms"],
        "tx_root": empty,
        "full_tx_root": empty,
        "rewards_root": merkle_root([reward_leaf(a, n) for a, n in allocations]).hex(),
        "validator_set_hash": vset,
        "next_validator_set_hash": vset,
        "state_root": state.root().hex(),
    }


# --------------------------------------------------------------------------------------------
# Light blocks (shared by both modes)

def check_light_block(chain_id: str, lb, trusted, height: int | None = None):
    """Checks one light block against the trusted set of its height. Returns (header hash,
    the set that signed, the next set, the signed weight)."""
    header = lb["header"]
    h = header["height"]
    if height is not None and (h != height or lb.get("height", h) != height):
        raise Mismatch(f"asked for height {height}, got header height {h}")
    if header["chain_id"] != chain_id:
        raise Mismatch(f"header chain id {header['chain_id']!r}, genesis is {chain_id!r}")
    block_hash = header_hash(header)
    if "hash" in lb and unhex(lb["hash"], 32, "hash") != block_hash:
        raise Mismatch(f"header hashes to {block_hash.hex()}, the node says {lb['hash']}")
    validators = parse_set(lb["validators"], what="validators")
    next_validators = parse_set(lb["next_validators"], what="next_validators")
    vhash = set_hash(validators)
    if unhex(header["validator_set_hash"], 32, "validator_set_hash") != vhash:
        raise Mismatch("the listed validators do not hash to the header's validator_set_hash")
    if vhash != set_hash(trusted):
        raise Mismatch(f"signed by set {vhash.hex()}, but the walk trusts set "
                       f"{set_hash(trusted).hex()} for this height")
    if unhex(header["next_validator_set_hash"], 32, "next_validator_set_hash") != set_hash(next_validators):
        raise Mismatch("the listed next_validators do not hash to next_validator_set_hash")
    cert = lb["certificate"]
    if cert["height"] != h:
        raise Mismatch(f"certificate is for height {cert['height']}")
    if unhex(cert["block_hash"], 32, "certificate.block_hash") != block_hash:
        raise Mismatch(f"certificate is for block {cert['block_hash']}, header hashes to {block_hash.hex()}")
    round_ = uint(cert["round"], 32, "certificate.round")
    digest = blake(vote_preimage(chain_id, "Precommit", h, round_, block_hash))
    weights = {v[0]: v[1] for v in validators}
    seen, signed = set(), 0
    for i, s in enumerate(cert["signatures"]):
        pk = unhex(s["validator"], 32, f"signatures[{i}].validator")
        if pk in seen:
            raise Mismatch(f"signer {pk.hex()} appears twice")
        seen.add(pk)
        if pk not in weights:
            raise Mismatch(f"signer {pk.hex()} is not in the validator set")
        if not verify_signature(pk, digest, unhex(s["signature"], 64, f"signatures[{i}].signature")):
            raise Mismatch(f"signature of {pk.hex()} does not verify")
        signed += weights[pk]
    total = sum(weights.values())
    if not is_quorum(signed, total):
        raise Mismatch(f"signed weight {signed} of {total} is below two thirds")
    return block_hash, validators, next_validators, signed


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
        except Mismatch as e:
            print(f"light_verify: height {height}: {e}")
            return 1
        except (KeyError, TypeError) as e:
            print(f"light_verify: height {height}: malformed answer ({type(e).__name__}: {e})")
            return 1
        except RpcError as e:
            print(f"light_verify: height {height}: {e}")
            return 2
        if set_hash(nexts) != set_hash(trusted):
            changes += 1
        trusted, prev_hash = nexts, block_hash
    print(f"light_verify: heights 1..{last} verified ({changes} set changes, {transactions} transactions)")
    return 0


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
        except Mismatch as e:
            print(f"vectors: mismatch: {e}")
            return 1
        except (KeyError, TypeError) as e:
            print(f"vectors: malformed vector file ({type(e).__name__}: {e})")
            return 1
    if not args.genesis:
        parser.error("--rpc needs --genesis")
    return run_rpc(args.rpc, args.genesis, args.to)


if __name__ == "__main__":
    sys.exit(main())
