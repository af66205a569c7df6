"""The TIME Coin protocol's byte layouts in Python, written from docs/PROTOCOL.md alone:
hashes, signatures, addresses, votes, validator sets, headers, transactions, Merkle trees,
rewards, the state commitment, the CBOR encoding and the light-block check. Used by
light_verify.py; needs the PyPI packages pynacl and blake3.
"""

from __future__ import annotations

import sys

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
