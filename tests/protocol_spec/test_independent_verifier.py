"""A second verifier, written from protocol_spec/SPEC.md alone, run against every test vector.

It deliberately does not import ``ostraca``: only ``cryptography``, ``rfc8785`` and the standard
library. If it and the reference implementation disagree on a vector, SPEC.md is ambiguous or
one of them is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VECTORS = Path(__file__).resolve().parents[2] / "protocol_spec" / "vectors"

# Section 1: payload types.
T_MANIFEST = "application/vnd.ostraca.manifest+json"
T_GRANT = "application/vnd.ostraca.access-grant+json"
T_REVOCATION = "application/vnd.ostraca.revocation+json"
T_REQUEST = "application/vnd.ostraca.access-request+json"
T_ROTATION = "application/vnd.ostraca.key-rotation+json"
T_ATTESTATION = "application/vnd.ostraca.training-attestation+json"

MAX_PAYLOAD = 512 * 1024 * 1024
MAX_ENVELOPE = MAX_PAYLOAD * 4 // 3 + 64 * 1024
SAFE = 2**53 - 1
SKEW = timedelta(minutes=5)


class RefusedError(Exception):
    def __init__(self, code: str, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code = code


def refuse(code: str, why: str) -> RefusedError:
    return RefusedError(code, why)


# ---------------------------------------------------------------- section 2: encoding


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise refuse("non_canonical", f"duplicate key {k!r}")
        out[k] = v
    return out


def _float(text: str) -> Any:
    raise refuse("non_canonical", f"float {text}")


def _constant(text: str) -> Any:
    raise refuse("non_canonical", text)


def _int(text: str) -> int:
    try:
        n = int(text)
    except ValueError as exc:  # more digits than Python converts
        raise refuse("malformed", "integer too long") from exc
    if not -SAFE <= n <= SAFE:
        raise refuse("malformed", "integer out of range")
    return n


def json_parse(data: bytes, *, ints: bool) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse("malformed", "not UTF-8") from exc
    try:
        return json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_float,
            parse_constant=_constant,
            parse_int=_int if ints else None,
        )
    except RefusedError:
        raise
    except ValueError as exc:
        raise refuse("malformed", f"not JSON: {exc}") from exc


def canonical_payload(payload: bytes) -> dict[str, Any]:
    """Section 2.1 (check 3)."""
    if len(payload) > MAX_PAYLOAD:
        raise refuse("malformed", "payload too large")
    value = json_parse(payload, ints=True)
    if not isinstance(value, dict):
        raise refuse("malformed", "payload is not an object")
    try:
        canonical = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise refuse("malformed", "no canonical form") from exc
    if canonical != payload:
        raise refuse("non_canonical", "bytes differ from RFC 8785")
    return value


def b64(text: Any) -> bytes:
    """Section 2.4."""
    if not isinstance(text, str):
        raise refuse("malformed", "base64 must be a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise refuse("malformed", "bad base64") from exc


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return (
        b"DSSEv1 "
        + str(len(t)).encode()
        + b" "
        + t
        + b" "
        + str(len(payload)).encode()
        + b" "
        + payload
    )


# ---------------------------------------------------------------- section 3: statements

HEX = re.compile(r"[0-9a-f]{64}")
TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
DATASET = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?/[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?")
SPDX = re.compile(r"LicenseRef-[A-Za-z0-9.-]{1,64}|[A-Za-z0-9][A-Za-z0-9.+-]{0,63}")
NONCE32 = re.compile(r"[0-9a-f]{32}")


def bad(field: str, why: str) -> RefusedError:
    return refuse("malformed", f"{field}: {why}")


def req(obj: dict[str, Any], field: str) -> Any:
    if field not in obj:
        raise bad(field, "missing")
    return obj[field]


def is_int(v: Any) -> bool:
    return type(v) is int


def pos_int(obj: dict[str, Any], field: str, default: Any = ...) -> int:
    v = req(obj, field) if default is ... else obj.get(field, default)
    if not is_int(v) or not 1 <= v <= SAFE:
        raise bad(field, "not a positive integer")
    return int(v)


def nonneg_int(obj: dict[str, Any], field: str) -> int:
    v = req(obj, field)
    if not is_int(v) or not 0 <= v <= SAFE:
        raise bad(field, "not a non-negative integer")
    return int(v)


def text(obj: dict[str, Any], field: str, lo: int, hi: int, default: Any = ...) -> str:
    v = req(obj, field) if default is ... else obj.get(field, default)
    if not isinstance(v, str) or not lo <= len(v) <= hi:
        raise bad(field, "not a string of the right length")
    return v


def match(obj: dict[str, Any], field: str, pattern: re.Pattern[str]) -> str:
    v = req(obj, field)
    if not isinstance(v, str) or not pattern.fullmatch(v):
        raise bad(field, "wrong form")
    return v


def hex256(obj: dict[str, Any], field: str) -> str:
    return match(obj, field, HEX)


def hex_or_null(obj: dict[str, Any], field: str, *, optional: bool = False) -> str | None:
    if optional and field not in obj:
        return None
    if req(obj, field) is None:
        return None
    return hex256(obj, field)


def dataset(obj: dict[str, Any]) -> str:
    v = match(obj, "dataset", DATASET)
    if ".." in v:
        raise bad("dataset", "contains ..")
    return v


def timestamp(obj: dict[str, Any], field: str) -> datetime:
    v = match(obj, field, TS)
    try:
        return datetime(
            int(v[0:4]),
            int(v[5:7]),
            int(v[8:10]),
            int(v[11:13]),
            int(v[14:16]),
            int(v[17:19]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise bad(field, "not a calendar instant") from exc


def spec_version(obj: dict[str, Any], *v2_fields: str) -> None:
    """1, or 2 exactly when one of the fields spec_version 2 introduced is set (SPEC 7)."""
    v = obj.get("spec_version", 1)
    if not (is_int(v) and v in (1, 2)):
        raise bad("spec_version", "unsupported")
    if (v == 2) != any(obj.get(f) is not None for f in v2_fields):
        raise bad("spec_version", "not the lowest version for the fields used")


GROUP = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?")


def blobs_of(shard: dict[str, Any]) -> list[dict[str, Any]]:
    """The shard's own blob (the default group's) and its group blobs."""
    return [shard, *(shard.get("groups") or [])]


def validate_groups(m: dict[str, Any], names: list[str]) -> None:
    groups = m.get("column_groups")
    if groups is None:
        if any(s.get("groups") is not None for s in m["shards"]):
            raise bad("groups", "group blobs without column groups")
        return
    if not isinstance(groups, list) or not 1 <= len(groups) <= 64:
        raise bad("column_groups", "not a list of the right length")
    grouped: list[str] = []
    for g in groups:
        if not isinstance(g, dict) or not GROUP.fullmatch(str(g.get("name"))):
            raise bad("column_groups", "bad group")
        cols = g.get("columns")
        if not isinstance(cols, list) or not cols or not all(c in names for c in cols):
            raise bad("column_groups", "columns not of the manifest")
        grouped += cols
    gnames = [g["name"] for g in groups]
    if "default" in gnames or len(set(gnames)) != len(gnames):
        raise bad("column_groups", "names")
    if len(set(grouped)) != len(grouped) or len(grouped) >= len(names):
        raise bad("column_groups", "overlap, or nothing left for default")
    for s in m["shards"]:
        parts = s.get("groups")
        if not isinstance(parts, list) or [p.get("group") for p in parts] != gnames:
            raise bad("groups", "not one blob per group in order")
        for p in parts:
            hex256(p, "sha256")
            pos_int(p, "bytes")
            hex256(p, "chunks")


def obj_list(obj: dict[str, Any], field: str, lo: int, hi: int) -> list[dict[str, Any]]:
    v = req(obj, field)
    if not isinstance(v, list) or not lo <= len(v) <= hi or not all(isinstance(x, dict) for x in v):
        raise bad(field, "not a list of objects of the right length")
    return v


def validate_manifest(m: dict[str, Any]) -> dict[str, Any]:
    spec_version(m, "column_groups")
    dataset(m)
    version = pos_int(m, "version")
    previous = hex_or_null(m, "previous")
    timestamp(m, "created")
    hex256(m, "publisher")
    match(m, "license", SPDX)
    text(m, "terms", 1, 65536)
    text(m, "description", 0, 16384, default="")
    text(m, "arrow_schema", 1, 1_398_104)
    columns = obj_list(m, "columns", 1, 10_000)
    for c in columns:
        text(c, "name", 1, 256)
        text(c, "type", 1, 1024)
    chunk = req(m, "chunk_bytes")
    if not is_int(chunk) or not 65536 <= chunk <= 64 * 1024 * 1024 or chunk & (chunk - 1):
        raise bad("chunk_bytes", "not a power of two in range")
    shards = obj_list(m, "shards", 1, 1_000_000)
    for s in shards:
        hex256(s, "sha256")
        pos_int(s, "bytes")
        pos_int(s, "rows")
        hex256(s, "chunks")
    total_rows, total_bytes = pos_int(m, "total_rows"), pos_int(m, "total_bytes")
    if (version == 1) != (previous is None):
        raise bad("previous", "null exactly for version 1")
    if len({c["name"] for c in columns}) != len(columns):
        raise bad("columns", "not unique")
    validate_groups(m, [c["name"] for c in columns])
    blobs = [b for s in shards for b in blobs_of(s)]
    if sum(s["rows"] for s in shards) != total_rows:
        raise bad("total_rows", "not the sum")
    if sum(b["bytes"] for b in blobs) != total_bytes:
        raise bad("total_bytes", "not the sum")
    if len({b["sha256"] for b in blobs}) != len(blobs):
        raise bad("shards", "listed twice")
    return m


def validate_request(r: dict[str, Any]) -> dict[str, Any]:
    spec_version(r)
    dataset(r)
    hex256(r, "requester")
    text(r, "purpose", 1, 4096)
    hex256(r, "terms_sha256")
    if req(r, "accept_terms") is not True:
        raise bad("accept_terms", "must be true")
    timestamp(r, "created")
    match(r, "nonce", NONCE32)
    return r


def validate_grant(g: dict[str, Any]) -> dict[str, Any]:
    spec_version(g, "groups")
    groups = g.get("groups")
    if groups is not None and (
        not isinstance(groups, list)
        or not 1 <= len(groups) <= 65
        or not all(isinstance(x, str) and GROUP.fullmatch(x) for x in groups)
        or len(set(groups)) != len(groups)
    ):
        raise bad("groups", "bad or repeated group names")
    dataset(g)
    hex256(g, "publisher")
    hex256(g, "grantee")
    hex_or_null(g, "request", optional=True)
    lo = pos_int(g, "min_version", default=1)
    hi = g.get("max_version")
    if hi is not None and (pos_int(g, "max_version") < lo):
        raise bad("max_version", "below min_version")
    cols = g.get("columns")
    if cols is not None:
        if not isinstance(cols, list) or not 1 <= len(cols) <= 10_000:
            raise bad("columns", "not a list of the right length")
        if not all(isinstance(c, str) and 1 <= len(c) <= 256 for c in cols) or len(
            set(cols)
        ) != len(cols):
            raise bad("columns", "bad or repeated names")
    if timestamp(g, "expires") <= timestamp(g, "not_before"):
        raise bad("expires", "not after not_before")
    timestamp(g, "created")
    return g


def granted_columns(g: dict[str, Any], m: dict[str, Any]) -> set[str]:
    """The columns in the grant's ``columns`` (all if null) whose group it covers."""
    names = [c["name"] for c in m["columns"]]
    group_of = dict.fromkeys(names, "default")
    for group in m.get("column_groups") or []:
        group_of.update(dict.fromkeys(group["columns"], group["name"]))
    cols, groups = g.get("columns"), g.get("groups")
    return {
        c
        for c in names
        if (cols is None or c in cols) and (groups is None or group_of[c] in groups)
    }


def validate_revocation(r: dict[str, Any]) -> dict[str, Any]:
    spec_version(r)
    dataset(r)
    hex256(r, "publisher")
    hex256(r, "grant")
    text(r, "reason", 0, 4096, default="")
    timestamp(r, "created")
    return r


def validate_rotation(r: dict[str, Any]) -> dict[str, Any]:
    spec_version(r)
    old = hex256(r, "old_key")
    new = req(r, "new_key")
    if not isinstance(new, dict):
        raise bad("new_key", "not an object")
    kid = hex256(new, "keyid")
    if new.get("algorithm", "ed25519") != "ed25519":
        raise bad("new_key.algorithm", "not ed25519")
    public = text(new, "public", 44, 44)
    raw = b64(public)
    if len(raw) != 32 or key_id(raw) != kid:
        raise bad("new_key", "keyid is not the sha256 of a 32-byte key")
    if kid == old:
        raise bad("new_key", "same as old_key")
    text(r, "reason", 0, 4096, default="")
    timestamp(r, "created")
    return r


def validate_attestation(a: dict[str, Any]) -> dict[str, Any]:
    spec_version(a)
    hex256(a, "trainer")
    hex256(a, "checkpoint_sha256")
    timestamp(a, "created")
    nonneg_int(a, "steps")
    nonneg_int(a, "tokens")
    arch = a.get("architecture", {})
    if not isinstance(arch, dict) or len(arch) > 256:
        raise bad("architecture", "not an object of at most 256 members")
    if not all(isinstance(v, str | bool) or is_int(v) for v in arch.values()):
        raise bad("architecture", "values must be str, int or bool")
    for d in obj_list(a, "datasets", 1, 1024):
        dataset(d)
        pos_int(d, "version")
        hex256(d, "manifest")
        match(d, "license", SPDX)
        hex256(d, "terms_sha256")
        grants = req(d, "grants")
        if not isinstance(grants, list) or not 1 <= len(grants) <= 1024:
            raise bad("grants", "not a list of the right length")
        if not all(isinstance(x, str) and HEX.fullmatch(x) for x in grants):
            raise bad("grants", "not ids")
        nonneg_int(d, "shards_consumed")
    return a


# ---------------------------------------------------------------- section 5: verification


class Envelope:
    def __init__(self, data: bytes) -> None:
        if len(data) > MAX_ENVELOPE:
            raise refuse("malformed", "envelope too large")
        obj = json_parse(data, ints=False)
        if not isinstance(obj, dict):
            raise refuse("malformed", "envelope is not an object")
        for field in ("payload", "payloadType", "signatures"):
            if field not in obj:
                raise refuse("malformed", f"envelope lacks {field}")
        if not isinstance(obj["payloadType"], str) or not obj["payloadType"]:
            raise refuse("malformed", "payloadType")
        self.payload_type: str = obj["payloadType"]
        self.payload = b64(obj["payload"])
        sigs = obj["signatures"]
        if not isinstance(sigs, list) or not 1 <= len(sigs) <= 8:
            raise refuse("malformed", "signatures")
        self.sigs: list[tuple[str, bytes]] = []
        for s in sigs:
            if not isinstance(s, dict) or not isinstance(s.get("keyid"), str):
                raise refuse("malformed", "signature entry")
            self.sigs.append((s["keyid"], b64(s.get("sig"))))


def _verify_sig(raw_key: bytes, sig: bytes, message: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(sig, message)
    except InvalidSignature as exc:
        raise refuse("bad_signature", "signature does not verify") from exc


class Result:
    def __init__(self, statement: dict[str, Any], digest: str, signer: str) -> None:
        self.statement, self.digest, self.signer = statement, digest, signer


def common(env: Envelope, expected_type: str, trusted: dict[str, bytes], validate: Any) -> Result:
    # 1
    if env.payload_type != expected_type:
        raise refuse("wrong_payload_type", env.payload_type)
    # 2
    if not trusted:
        raise refuse("untrusted_key", "nothing trusted")
    message = pae(env.payload_type, env.payload)
    signer = None
    for kid, sig in env.sigs:
        if kid in trusted:
            _verify_sig(trusted[kid], sig, message)
            signer = kid
            break
    if signer is None:
        raise refuse("untrusted_key", "no trusted signature")
    # 3
    obj = canonical_payload(env.payload)
    # 4
    return Result(validate(obj), hashlib.sha256(env.payload).hexdigest(), signer)


def not_future(created: datetime, now: datetime) -> None:
    if created > now + SKEW:
        raise refuse("verification_failed", "from the future")


def verify_manifest(
    env: Envelope, keys: dict[str, bytes], now: datetime, want: str | None, previous: Result | None
) -> Result:
    r = common(env, T_MANIFEST, keys, validate_manifest)
    m = r.statement
    if m["publisher"] != r.signer:  # M5
        raise refuse("untrusted_key", "publisher is not signer")
    if want is not None and m["dataset"] != want:  # M6
        raise refuse("out_of_scope", "other dataset")
    not_future(timestamp(m, "created"), now)  # M7
    if previous is not None:  # M8
        p = previous.statement
        if p["dataset"] != m["dataset"]:
            raise refuse("chain_broken", "other dataset")
        if m["version"] < p["version"]:
            raise refuse("rollback", "older")
        if m["version"] == p["version"] and r.digest != previous.digest:
            raise refuse("chain_broken", "fork")
        if m["version"] == p["version"] + 1 and m["previous"] != previous.digest:
            raise refuse("chain_broken", "does not link")
        if m["version"] > p["version"] + 1:
            raise refuse("chain_broken", "gap")
    return r


def verify_grant(
    env: Envelope,
    manifest: Result,
    manifest_key: bytes,
    grantee: str,
    now: datetime,
    revoked: set[str],
    columns: list[str] | None,
) -> Result:
    r = common(env, T_GRANT, {manifest.signer: manifest_key}, validate_grant)
    g, m = r.statement, manifest.statement
    if g["publisher"] != r.signer:  # G5
        raise refuse("untrusted_key", "publisher is not signer")
    if g["dataset"] != m["dataset"]:  # G6
        raise refuse("out_of_scope", "dataset")
    if g["grantee"] != grantee:  # G7
        raise refuse("out_of_scope", "grantee")
    hi = g.get("max_version")
    if not (g.get("min_version", 1) <= m["version"] and (hi is None or m["version"] <= hi)):  # G8
        raise refuse("out_of_scope", "version")
    granted = granted_columns(g, m)  # G9
    if not granted or (columns is not None and not set(columns) <= granted):
        raise refuse("out_of_scope", "columns")
    if now < timestamp(g, "not_before"):  # G10
        raise refuse("not_yet_valid", "early")
    if now >= timestamp(g, "expires"):  # G11
        raise refuse("expired", "late")
    if r.digest in revoked:  # G12
        raise refuse("revoked", "revoked")
    return r


def verify_simple(
    env: Envelope, check: str, key: bytes, now: datetime, inp: dict[str, Any]
) -> Result:
    kid = key_id(key)
    if check == "revocation":
        r = common(env, T_REVOCATION, {kid: key}, validate_revocation)
        if r.statement["publisher"] != r.signer:  # R5
            raise refuse("untrusted_key", "publisher")
        not_future(timestamp(r.statement, "created"), now)  # R6
        return r
    if check == "request":
        r = common(env, T_REQUEST, {kid: key}, validate_request)
        if r.statement["requester"] != r.signer:  # Q5
            raise refuse("untrusted_key", "requester")
        not_future(timestamp(r.statement, "created"), now)  # Q6
        if inp["manifest"] is not None:  # Q7
            m = json.loads(Envelope(inp["manifest"].encode()).payload)
            terms = hashlib.sha256(m["terms"].encode("utf-8")).hexdigest()
            if r.statement["dataset"] != m["dataset"] or r.statement["terms_sha256"] != terms:
                raise refuse("out_of_scope", "dataset or terms")
        return r
    if check == "key_rotation":
        r = common(env, T_ROTATION, {kid: key}, validate_rotation)
        if r.statement["old_key"] != r.signer:  # K5
            raise refuse("untrusted_key", "old_key")
        new = r.statement["new_key"]
        new_sigs = [sig for k, sig in env.sigs if k == new["keyid"]]  # K6
        if not new_sigs:
            raise refuse("bad_signature", "new key did not sign")
        _verify_sig(
            base64.b64decode(new["public"]), new_sigs[0], pae(env.payload_type, env.payload)
        )
        not_future(timestamp(r.statement, "created"), now)  # K7
        return r
    if check == "attestation":
        r = common(env, T_ATTESTATION, {kid: key}, validate_attestation)
        if r.statement["trainer"] != r.signer:  # A5
            raise refuse("untrusted_key", "trainer")
        not_future(timestamp(r.statement, "created"), now)  # A6
        want = inp["checkpoint_sha256"]
        if want is not None and r.statement["checkpoint_sha256"] != want:  # A7
            raise refuse("verification_failed", "other checkpoint")
        return r
    raise AssertionError(check)


def load(name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((VECTORS / name).read_bytes())
    return out


KEYS: dict[str, bytes] = {
    k["keyid"]: bytes.fromhex(k["public_hex"]) for k in load("keys.json")["keys"].values()
}


def run_vector(v: dict[str, Any]) -> Result:
    inp = v["inputs"]
    now = datetime.strptime(inp["now"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    trusted = {kid: KEYS[kid] for kid in inp["trusted_keys"]}
    chain: Result | None = None
    for text_ in inp["previous"]:
        chain = verify_manifest(Envelope(text_.encode()), trusted, now, None, chain)
    env = Envelope(v["envelope"].encode("utf-8"))
    check = inp["check"]
    if check == "manifest":
        return verify_manifest(env, trusted, now, inp["dataset"], chain)
    if check == "grant":
        m = verify_manifest(Envelope(inp["manifest"].encode()), trusted, now, None, chain)
        return verify_grant(
            env, m, trusted[m.signer], inp["grantee"], now, set(inp["revoked"]), inp["columns"]
        )
    (key,) = trusted.values()
    return verify_simple(env, check, key, now, inp)


POSITIVE = load("positive.json")["vectors"]
NEGATIVE = load("negative.json")["vectors"]


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["name"] for v in POSITIVE])
def test_positive_vector_accepted(vector: dict[str, Any]) -> None:
    result = run_vector(vector)
    assert result.digest == vector["expected"]["statement_id"]
    assert result.signer == vector["expected"]["signer"]
    env = Envelope(vector["envelope"].encode())
    assert env.payload == vector["payload_text"].encode("utf-8")
    assert env.payload_type == vector["payload_type"]
    assert hashlib.sha256(pae(env.payload_type, env.payload)).hexdigest() == vector["pae_sha256"]


@pytest.mark.parametrize("vector", NEGATIVE, ids=[v["name"] for v in NEGATIVE])
def test_negative_vector_refused_with_its_code(vector: dict[str, Any]) -> None:
    with pytest.raises(RefusedError) as info:
        run_vector(vector)
    assert info.value.code == vector["expected"]["code"], str(info.value)


def test_keys_derive_from_seeds() -> None:
    for k in load("keys.json")["keys"].values():
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed_hex"]))
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert raw.hex() == k["public_hex"]
        assert base64.b64encode(raw).decode() == k["public_b64"]
        assert key_id(raw) == k["keyid"]


def test_positive_signatures_are_reproducible_from_seeds() -> None:
    seeds = {k["keyid"]: bytes.fromhex(k["seed_hex"]) for k in load("keys.json")["keys"].values()}
    for v in POSITIVE:
        env = json.loads(v["envelope"])
        message = pae(env["payloadType"], base64.b64decode(env["payload"]))
        for s in env["signatures"]:
            sig = Ed25519PrivateKey.from_private_bytes(seeds[s["keyid"]]).sign(message)
            assert base64.b64encode(sig).decode() == s["sig"]


@pytest.mark.parametrize("vector", load("canonical.json")["vectors"], ids=lambda v: v["name"])
def test_canonical_vectors(vector: dict[str, Any]) -> None:
    assert rfc8785.dumps(json.loads(vector["value_json"])).hex() == vector["canonical_utf8_hex"]


@pytest.mark.parametrize("vector", load("chunks.json")["vectors"], ids=lambda v: v["name"])
def test_chunk_vectors(vector: dict[str, Any]) -> None:
    offset = int(re.fullmatch(r"byte i is \(i \+ (\d+)\) mod 251, .*", vector["content_rule"])[1])  # type: ignore[index]
    data = bytes((i + offset) % 251 for i in range(vector["bytes"]))
    step = vector["chunk_bytes"]
    chunk_list = b"".join(
        hashlib.sha256(data[i : i + step]).digest() for i in range(0, len(data), step)
    )
    assert len(chunk_list) == 32 * -(-len(data) // step)
    assert hashlib.sha256(data).hexdigest() == vector["sha256"]
    assert chunk_list.hex() == vector["chunk_list_hex"]
    assert hashlib.sha256(chunk_list).hexdigest() == vector["chunks"]


def test_auth_vectors() -> None:
    keys = load("keys.json")["keys"]
    for v in load("auth.json")["vectors"]:
        raw = bytes.fromhex(keys[v["key"]]["public_hex"])
        if v["name"] == "login":
            message = b"ostraca-login-v1\n" + v["nonce"].encode("ascii")
        else:
            message = b"ostraca-register-v1\n" + rfc8785.dumps(v["profile"])
        assert message.hex() == v["message_hex"]
        Ed25519PublicKey.from_public_bytes(raw).verify(
            base64.b64decode(v["signature_b64"]), message
        )
