"""Generate the protocol test vectors in ``protocol_spec/vectors/`` (SPEC.md section 10).

Deterministic: keys come from fixed seeds (Ed25519 signatures are deterministic), timestamps and
nonces are constants, and every file is written with a fixed layout. Running it twice gives the
same bytes; ``tests/protocol_spec/test_vectors.py`` checks that the committed files are exactly
what this script writes.

    python scripts/gen_vectors.py [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import (
    AccessGrant,
    AccessRequest,
    Column,
    ConsumedDataset,
    DatasetManifest,
    Envelope,
    KeyRotation,
    PublicKey,
    Revocation,
    ShardEntry,
    SigningKey,
    Statement,
    TrainingAttestation,
    canonical_bytes,
    pae,
    sign_envelope,
    sign_statement,
)
from ostraca.protocol_spec.auth import login_message, registration_message
from ostraca.protocol_spec.chunks import compute_chunk_list
from ostraca.protocol_spec.models import GroupBlob

VECTORS_DIR = Path(__file__).resolve().parent.parent / "protocol_spec" / "vectors"
NOW = "2024-06-01T12:00:00Z"
DATASET = "acme/books"
CHUNK_BYTES = 65536

JSON = dict[str, Any]


def _t(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _seed(name: str) -> bytes:
    return hashlib.sha256(b"ostraca test vector key: " + name.encode()).digest()


KEY_NAMES = (
    "publisher",
    "publisher_second",
    "publisher_new",
    "stranger",
    "researcher",
    "researcher_other",
    "trainer",
)
KEYS = {name: SigningKey.from_seed(_seed(name)) for name in KEY_NAMES}
PUB, PUB2, NEW, STRANGER = (
    KEYS[n] for n in ("publisher", "publisher_second", "publisher_new", "stranger")
)
RES, RES2, TRAINER = KEYS["researcher"], KEYS["researcher_other"], KEYS["trainer"]


def shard_bytes(index: int, size: int) -> bytes:
    """Stand-in shard content: byte ``i`` is ``(i + 7 * index) % 251``."""
    return bytes((i + 7 * index) % 251 for i in range(size))


def chunk_list(data: bytes, chunk_bytes: int) -> bytes:
    """Concatenated raw sha256 digests of each ``chunk_bytes`` piece (the last may be shorter)."""
    return b"".join(
        hashlib.sha256(data[i : i + chunk_bytes]).digest() for i in range(0, len(data), chunk_bytes)
    )


SHARD_SIZES = (150_000, 65_536, 1_000)


def shard_entry(index: int) -> ShardEntry:
    data = shard_bytes(index, SHARD_SIZES[index])
    return ShardEntry(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        rows=10 * (index + 1),
        chunks=hashlib.sha256(chunk_list(data, CHUNK_BYTES)).hexdigest(),
    )


TERMS = "Research use only. No redistribution. Cite Acme Library (2024)."
SCHEMA_B64 = base64.b64encode(b"stand-in for an Arrow IPC schema message").decode()


def manifest(version: int, previous: str | None, shards: tuple[int, ...], **extra: Any) -> JSON:
    entries = [shard_entry(i) for i in shards]
    m = DatasetManifest(
        dataset=DATASET,
        version=version,
        previous=previous,
        created=_t(f"2024-05-0{version}T09:30:00Z"),
        publisher=PUB.keyid,
        license="CC-BY-4.0",
        terms=TERMS,
        description="Public-domain books, one row per paragraph.",
        arrow_schema=SCHEMA_B64,
        columns=[Column(name="text", type="large_string"), Column(name="book_id", type="int64")],
        chunk_bytes=CHUNK_BYTES,
        shards=entries,
        total_rows=sum(s.rows for s in entries),
        total_bytes=sum(s.bytes for s in entries),
    )
    return {**_dump(m), **extra}


def _dump(m: DatasetManifest) -> JSON:
    """``m`` as JSON; ``chunk_digest`` left out when unset, as in its payload (sha256)."""
    return m.model_dump(mode="json", exclude=None if m.chunk_digest else {"chunk_digest"})


def group_blob(index: int, group: str) -> GroupBlob:
    """Shard ``index``'s blob of column group ``group`` (its own bytes)."""
    data = shard_bytes(100 + index, SHARD_SIZES[index] // 3 + 1)
    return GroupBlob(
        group=group,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        chunks=hashlib.sha256(chunk_list(data, CHUNK_BYTES)).hexdigest(),
    )


def grouped_manifest(**extra: Any) -> JSON:
    """spec_version 2: ``book_id`` in the column group ``ids``, ``text`` in ``default``."""
    base = manifest(1, None, (0, 1))
    shards = [
        {**s, "groups": [group_blob(i, "ids").model_dump(mode="json")]}
        for i, s in enumerate(base["shards"])
    ]
    total = sum(s["bytes"] + s["groups"][0]["bytes"] for s in shards)
    obj = {
        **base,
        "spec_version": 2,
        "column_groups": [{"name": "ids", "columns": ["book_id"]}],
        "shards": shards,
        "total_bytes": total,
    }
    return {**_dump(DatasetManifest.model_validate(obj)), **extra}


def digest(env: Envelope) -> str:
    return env.digest


def signed(statement: Statement, *keys: SigningKey) -> Envelope:
    return sign_statement(statement, list(keys))


def signed_obj(payload_type: str, obj: JSON, *keys: SigningKey) -> Envelope:
    """Sign a raw JSON object (possibly invalid as a statement) in canonical form."""
    return sign_envelope(payload_type, canonical_bytes(obj), list(keys))


def signed_bytes(payload_type: str, payload: bytes, *keys: SigningKey) -> Envelope:
    return sign_envelope(payload_type, payload, list(keys))


MANIFEST_T = DatasetManifest.PAYLOAD_TYPE
GRANT_T = AccessGrant.PAYLOAD_TYPE
REQUEST_T = AccessRequest.PAYLOAD_TYPE

M1 = signed(DatasetManifest.model_validate(manifest(1, None, (0, 1))), PUB)
M2 = signed(DatasetManifest.model_validate(manifest(2, M1.digest, (0, 1, 2))), PUB)
M3 = signed(DatasetManifest.model_validate(manifest(3, M2.digest, (1, 2))), PUB)
M2_FORK = signed(DatasetManifest.model_validate(manifest(2, M1.digest, (2,))), PUB)
M_TERMS = DatasetManifest.model_validate(manifest(1, None, (0, 1)))
M_GROUPED = signed(DatasetManifest.model_validate(grouped_manifest()), PUB)

REQUEST = AccessRequest(
    dataset=DATASET,
    requester=RES.keyid,
    purpose="Train a 10M-parameter language model for a reading-level study.",
    terms_sha256=M_TERMS.terms_sha256,
    accept_terms=True,
    created=_t("2024-05-10T08:00:00Z"),
    nonce="00112233445566778899aabbccddeeff",
)
REQ_ENV = signed(REQUEST, RES)


def grant(**changes: Any) -> AccessGrant:
    fields: JSON = {
        "dataset": DATASET,
        "publisher": PUB.keyid,
        "grantee": RES.keyid,
        "request": REQ_ENV.digest,
        "min_version": 1,
        "max_version": 2,
        "columns": ["text", "book_id"],
        "not_before": _t("2024-05-11T00:00:00Z"),
        "expires": _t("2025-05-11T00:00:00Z"),
        "created": _t("2024-05-10T12:00:00Z"),
    }
    fields.update(changes)
    return AccessGrant(**fields)


GRANT = signed(grant(), PUB)

REVOCATION = Revocation(
    dataset=DATASET,
    publisher=PUB.keyid,
    grant=GRANT.digest,
    reason="Requester left the project.",
    created=_t("2024-05-20T00:00:00Z"),
)
ROTATION = KeyRotation(
    old_key=PUB.keyid,
    new_key=PublicKey.from_verify_key(NEW.public),
    reason="Scheduled yearly rotation.",
    created=_t("2024-05-25T00:00:00Z"),
)
CHECKPOINT = hashlib.sha256(b"stand-in checkpoint bytes").hexdigest()
ATTESTATION = TrainingAttestation(
    trainer=TRAINER.keyid,
    checkpoint_sha256=CHECKPOINT,
    created=_t("2024-05-30T00:00:00Z"),
    steps=1000,
    tokens=8_192_000,
    architecture={"n_layer": 4, "n_head": 4, "d_model": 256, "tokenizer": "bytes", "tied": True},
    datasets=[
        ConsumedDataset(
            dataset=DATASET,
            version=2,
            manifest=M2.digest,
            license="CC-BY-4.0",
            terms_sha256=M_TERMS.terms_sha256,
            grants=[GRANT.digest],
            shards_consumed=3,
        )
    ],
)


def inputs(check: str, **values: Any) -> JSON:
    """Verification inputs with defaults; SPEC.md section 10 explains each key."""
    base: JSON = {
        "check": check,
        "now": NOW,
        "trusted_keys": [PUB.keyid, PUB2.keyid],
        "dataset": None,
        "previous": [],
        "manifest": None,
        "grantee": None,
        "revoked": [],
        "columns": None,
        "checkpoint_sha256": None,
    }
    for key, value in values.items():
        if key not in base:
            raise KeyError(key)
        base[key] = value.to_json().decode() if isinstance(value, Envelope) else value
    base["previous"] = [
        e.to_json().decode() if isinstance(e, Envelope) else e for e in base["previous"]
    ]
    return base


def key_entry(key: SigningKey) -> JSON:
    return {
        "seed_hex": _seed(next(n for n, k in KEYS.items() if k is key)).hex(),
        "public_hex": key.public.raw.hex(),
        "public_b64": key.public.b64,
        "keyid": key.keyid,
    }


def positive(name: str, description: str, env: Envelope, inp: JSON) -> JSON:
    return {
        "name": name,
        "description": description,
        "envelope": env.to_json().decode(),
        "payload_type": env.payload_type,
        "payload_text": env.payload.decode("utf-8"),
        "pae_sha256": hashlib.sha256(pae(env.payload_type, env.payload)).hexdigest(),
        "inputs": inp,
        "expected": {
            "valid": True,
            "statement_id": env.digest,
            "signer": inp["_signer"],
        },
    }


def positives() -> list[JSON]:
    grant_inputs = {"manifest": M2, "grantee": RES.keyid}
    future = manifest(1, None, (0,))
    future["x_future_field"] = {"note": "kept under the signature", "list": [1, "two", None]}
    future["shards"][0]["x_placement"] = "eu-west"
    # Keys ordered by UTF-16 code units, not code points: U+1F600 (D83D DE00) < U+E000.
    future["x_\U0001f600"] = "astral key"
    future["x_\ue000"] = "private-use key"
    future["x_text"] = "é, “quotes”, tab\t, nul\u0000, del\u007f, \u2028 and \U0001f4da"
    rows = [
        (
            "manifest-v1",
            "Version 1 of acme/books (two shards), no previous manifest trusted yet.",
            M1,
            inputs("manifest", dataset=DATASET),
            PUB,
        ),
        (
            "manifest-v2-chain",
            "Version 2 links to version 1 by its statement id.",
            M2,
            inputs("manifest", dataset=DATASET, previous=[M1]),
            PUB,
        ),
        (
            "manifest-v3-walk",
            "Walking the chain 1 → 2 → 3 from nothing trusted: each step is checked (M8).",
            M3,
            inputs("manifest", dataset=DATASET, previous=[M1, M2]),
            PUB,
        ),
        (
            "manifest-same-version-again",
            "The trusted version presented again (same id): accepted, nothing changes.",
            M2,
            inputs("manifest", dataset=DATASET, previous=[M1, M2]),
            PUB,
        ),
        (
            "manifest-second-namespace-key",
            "Signed by the namespace's second trusted key, which it names as publisher.",
            signed_obj(MANIFEST_T, {**manifest(1, None, (0,)), "publisher": PUB2.keyid}, PUB2),
            inputs("manifest"),
            PUB2,
        ),
        (
            "manifest-two-signatures-first-untrusted",
            "Signatures by unknown keys are skipped; the trusted one verifies.",
            signed(DatasetManifest.model_validate(manifest(1, None, (0,))), STRANGER, PUB),
            inputs("manifest"),
            PUB,
        ),
        (
            "manifest-unknown-fields",
            "Unknown fields (top level and in a shard entry, including astral and private-use "
            "keys that sort differently by UTF-16 and by code point) are accepted and signed.",
            signed_obj(MANIFEST_T, future, PUB),
            inputs("manifest"),
            PUB,
        ),
        (
            "request",
            "An access request accepting the dataset's current terms (Q7 against the manifest).",
            REQ_ENV,
            inputs("request", trusted_keys=[RES.keyid], manifest=M1),
            RES,
        ),
        (
            "grant",
            "Grant to the researcher, versions 1..2, two columns, checked against version 2.",
            GRANT,
            inputs("grant", **grant_inputs),
            PUB,
        ),
        (
            "grant-all-versions-all-columns",
            "max_version null (all versions, future ones too) and columns null (all columns).",
            signed(grant(max_version=None, columns=None, request=None), PUB),
            inputs("grant", manifest=M3, grantee=RES.keyid),
            PUB,
        ),
        (
            "grant-column-subset-read",
            "A grant for one column, used to read exactly that column.",
            signed(grant(columns=["text"]), PUB),
            inputs("grant", manifest=M2, grantee=RES.keyid, columns=["text"]),
            PUB,
        ),
        (
            "grant-column-subset-nothing-asked",
            "A grant for one column, no columns named: the reader reads the granted column.",
            signed(grant(columns=["text"]), PUB),
            inputs("grant", manifest=M2, grantee=RES.keyid),
            PUB,
        ),
        (
            "manifest-column-groups",
            "spec_version 2: book_id in the column group ids, stored in blobs of its own.",
            M_GROUPED,
            inputs("manifest", dataset=DATASET),
            PUB,
        ),
        (
            "grant-column-group",
            "spec_version 2 grant for the default group only, reading its column text.",
            signed(grant(groups=["default"], columns=None, spec_version=2), PUB),
            inputs("grant", manifest=M_GROUPED, grantee=RES.keyid, columns=["text"]),
            PUB,
        ),
        (
            "grant-other-revoked",
            "The revoked set names another grant only.",
            GRANT,
            inputs("grant", manifest=M2, grantee=RES.keyid, revoked=["ab" * 32]),
            PUB,
        ),
        (
            "revocation",
            "Revocation of the grant above, signed by the publisher.",
            signed(REVOCATION, PUB),
            inputs("revocation", trusted_keys=[PUB.keyid]),
            PUB,
        ),
        (
            "key-rotation",
            "Rotation from the publisher key to a new key, signed by both (old first).",
            signed(ROTATION, PUB, NEW),
            inputs("key_rotation", trusted_keys=[PUB.keyid]),
            PUB,
        ),
        (
            "attestation",
            "A training attestation about one checkpoint, signed by the trainer key.",
            signed(ATTESTATION, TRAINER),
            inputs("attestation", trusted_keys=[TRAINER.keyid], checkpoint_sha256=CHECKPOINT),
            TRAINER,
        ),
    ]
    out = []
    for name, description, env, inp, signer in rows:
        inp["_signer"] = signer.keyid
        vector = positive(name, description, env, inp)
        del vector["inputs"]["_signer"]
        out.append(vector)
    return out


def negative(name: str, description: str, code: str, envelope: Envelope | str, inp: JSON) -> JSON:
    text = envelope if isinstance(envelope, str) else envelope.to_json().decode()
    return {
        "name": name,
        "description": description,
        "envelope": text,
        "inputs": inp,
        "expected": {"valid": False, "code": code},
    }


def _flip_sig(env: Envelope) -> Envelope:
    sig = env.signatures[0]
    bad = bytes([sig.sig[0] ^ 0x01]) + sig.sig[1:]
    return Envelope(
        payload_type=env.payload_type,
        payload=env.payload,
        signatures=(type(sig)(keyid=sig.keyid, sig=bad),),
    )


def _grant_obj(**changes: Any) -> JSON:
    return {**grant().model_dump(mode="json"), **changes}


def _without_group_blob() -> JSON:
    obj = grouped_manifest()
    first = obj["shards"][0]
    obj["total_bytes"] -= first["groups"][0]["bytes"]
    obj["shards"] = [{k: v for k, v in first.items() if k != "groups"}, *obj["shards"][1:]]
    return obj


def _env_text(payload: bytes, payload_type: str, sigs: list[JSON]) -> str:
    obj = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": sigs,
    }
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def negatives() -> list[JSON]:
    m1 = manifest(1, None, (0, 1))
    m1_payload = canonical_bytes(m1)
    grant_in: JSON = {"manifest": M2, "grantee": RES.keyid}
    ok_sig = [
        {
            "keyid": PUB.keyid,
            "sig": base64.b64encode(PUB.sign(pae(MANIFEST_T, m1_payload))).decode(),
        }
    ]
    spaced = json.dumps(m1, sort_keys=True, separators=(", ", ": ")).encode()
    unsorted = json.dumps(dict(reversed(list(m1.items()))), separators=(",", ":")).encode()
    escaped = canonical_bytes(m1).replace(b'"text"', b'"\\u0074ext"')
    dup = m1_payload[:-1] + b',"version":1}'
    flt = m1_payload.replace(b'"version":1', b'"version":1.0')
    big = canonical_bytes({**m1, "x": 1}).replace(b'"x":1', b'"x":9007199254740992')
    huge = canonical_bytes({**m1, "x": 1}).replace(b'"x":1', b'"x":' + b"9" * 5000)
    surrogate = canonical_bytes({**m1, "x": "a"}).replace(b'"x":"a"', b'"x":"\\ud800"')
    rot_obj = ROTATION.model_dump(mode="json")

    def bad_manifest(name: str, why: str, **changes: Any) -> JSON:
        obj = {**m1, **changes}
        return negative(
            name, why, "malformed", signed_obj(MANIFEST_T, obj, PUB), inputs("manifest")
        )

    def without(obj: JSON, key: str) -> JSON:
        return {k: v for k, v in obj.items() if k != key}

    shard0 = m1["shards"][0]
    rows: list[JSON] = [
        # --- envelope (checks 1-2) ---
        negative(
            "bad-signature",
            "One bit of the signature flipped.",
            "bad_signature",
            _flip_sig(M1),
            inputs("manifest"),
        ),
        negative(
            "bad-signature-payload-changed",
            "Payload changed after signing (the first shard's rows 10 → 11).",
            "bad_signature",
            Envelope(
                payload_type=MANIFEST_T,
                payload=m1_payload.replace(b'"rows":10', b'"rows":11'),
                signatures=M1.signatures,
            ),
            inputs("manifest"),
        ),
        negative(
            "untrusted-key",
            "Valid signature, but by a key that is not trusted.",
            "untrusted_key",
            signed(DatasetManifest.model_validate(m1), STRANGER),
            inputs("manifest"),
        ),
        negative(
            "no-trusted-keys",
            "Verifier trusts no key at all.",
            "untrusted_key",
            M1,
            inputs("manifest", trusted_keys=[]),
        ),
        negative(
            "wrong-payload-type",
            "A manifest signed under the grant payload type, verified as a manifest.",
            "wrong_payload_type",
            signed_obj(GRANT_T, m1, PUB),
            inputs("manifest"),
        ),
        negative(
            "cross-type-manifest-as-grant",
            "A valid manifest envelope presented as a grant.",
            "wrong_payload_type",
            M2,
            inputs("grant", **grant_in),
        ),
        negative(
            "payload-type-swapped-after-signing",
            "payloadType changed from manifest to grant after signing: PAE differs.",
            "bad_signature",
            Envelope(
                payload_type=GRANT_T,
                payload=GRANT.payload,
                signatures=signed_obj(MANIFEST_T, grant().model_dump(mode="json"), PUB).signatures,
            ),
            inputs("grant", **grant_in),
        ),
        negative(
            "publisher-field-not-signer",
            "Signed by a trusted namespace key that is not the key named in `publisher`.",
            "untrusted_key",
            signed_obj(MANIFEST_T, m1, PUB2),
            inputs("manifest"),
        ),
        # --- envelope syntax ---
        negative(
            "envelope-not-json",
            "Envelope bytes are not JSON.",
            "malformed",
            "{payload:",
            inputs("manifest"),
        ),
        negative(
            "envelope-array", "Envelope is a JSON array.", "malformed", "[]", inputs("manifest")
        ),
        negative(
            "envelope-no-signatures",
            "Empty signatures list.",
            "malformed",
            _env_text(m1_payload, MANIFEST_T, []),
            inputs("manifest"),
        ),
        negative(
            "envelope-missing-payload-type",
            "payloadType absent.",
            "malformed",
            json.dumps({"payload": base64.b64encode(m1_payload).decode(), "signatures": ok_sig}),
            inputs("manifest"),
        ),
        negative(
            "envelope-payload-not-base64",
            "payload is not base64.",
            "malformed",
            _env_text(m1_payload, MANIFEST_T, ok_sig).replace('"payload":"', '"payload":"*'),
            inputs("manifest"),
        ),
        negative(
            "envelope-sig-not-base64",
            "sig is not base64.",
            "malformed",
            _env_text(m1_payload, MANIFEST_T, [{"keyid": PUB.keyid, "sig": "%%%"}]),
            inputs("manifest"),
        ),
        negative(
            "envelope-keyid-not-string",
            "keyid is a number.",
            "malformed",
            _env_text(m1_payload, MANIFEST_T, [{"keyid": 5, "sig": ok_sig[0]["sig"]}]),
            inputs("manifest"),
        ),
        negative(
            "envelope-duplicate-key",
            "Envelope object repeats payloadType.",
            "non_canonical",
            _env_text(m1_payload, MANIFEST_T, ok_sig)[:-1] + ',"payloadType":"x"}',
            inputs("manifest"),
        ),
        negative(
            "envelope-too-many-signatures",
            "Nine signatures (the limit is 8).",
            "malformed",
            _env_text(m1_payload, MANIFEST_T, ok_sig * 9),
            inputs("manifest"),
        ),
        # --- payload canonical form (check 3) ---
        negative(
            "non-canonical-whitespace",
            "Correctly signed, but with spaces after , and :.",
            "non_canonical",
            signed_bytes(MANIFEST_T, spaced, PUB),
            inputs("manifest"),
        ),
        negative(
            "non-canonical-key-order",
            "Correctly signed, keys not sorted.",
            "non_canonical",
            signed_bytes(MANIFEST_T, unsorted, PUB),
            inputs("manifest"),
        ),
        negative(
            "non-canonical-escape",
            "An unnecessary \\u escape in a key.",
            "non_canonical",
            signed_bytes(MANIFEST_T, escaped, PUB),
            inputs("manifest"),
        ),
        negative(
            "non-canonical-trailing-newline",
            "Canonical bytes plus a newline.",
            "non_canonical",
            signed_bytes(MANIFEST_T, m1_payload + b"\n", PUB),
            inputs("manifest"),
        ),
        negative(
            "duplicate-keys",
            "The top-level object repeats `version`.",
            "non_canonical",
            signed_bytes(MANIFEST_T, dup, PUB),
            inputs("manifest"),
        ),
        negative(
            "float-in-payload",
            "version written as 1.0.",
            "non_canonical",
            signed_bytes(MANIFEST_T, flt, PUB),
            inputs("manifest"),
        ),
        negative(
            "integer-out-of-range",
            "An unknown field holding 2**53.",
            "malformed",
            signed_bytes(MANIFEST_T, big, PUB),
            inputs("manifest"),
        ),
        negative(
            "integer-5000-digits",
            "An unknown field holding a 5000-digit integer.",
            "malformed",
            signed_bytes(MANIFEST_T, huge, PUB),
            inputs("manifest"),
        ),
        negative(
            "lone-surrogate",
            "A string holding the escape \\ud800 (no UTF-8 form).",
            "malformed",
            signed_bytes(MANIFEST_T, surrogate, PUB),
            inputs("manifest"),
        ),
        negative(
            "payload-not-utf8",
            "Payload bytes are Latin-1, not UTF-8.",
            "malformed",
            signed_bytes(MANIFEST_T, b'{"terms":"caf\xe9"}', PUB),
            inputs("manifest"),
        ),
        negative(
            "payload-not-object",
            "Payload is a canonical JSON array.",
            "malformed",
            signed_bytes(MANIFEST_T, b"[1,2]", PUB),
            inputs("manifest"),
        ),
        negative(
            "payload-not-json",
            "Payload is not JSON.",
            "malformed",
            signed_bytes(MANIFEST_T, b"version: 1", PUB),
            inputs("manifest"),
        ),
        # --- statement fields (check 4) ---
        negative(
            "missing-field",
            "No `shards`.",
            "malformed",
            signed_obj(MANIFEST_T, without(m1, "shards"), PUB),
            inputs("manifest"),
        ),
        bad_manifest(
            "spec-version-2",
            "spec_version 2 without any of its fields (the lowest version is required).",
            spec_version=2,
        ),
        bad_manifest(
            "spec-version-3",
            "spec_version 3 is not understood by a version-2 verifier.",
            spec_version=3,
        ),
        bad_manifest(
            "spec-version-true",
            "spec_version true (equal to 1 in some languages).",
            spec_version=True,
        ),
        bad_manifest(
            "path-traversal-dataset", "Dataset name with path traversal.", dataset="acme/../../etc"
        ),
        bad_manifest("dataset-double-dot", "Dataset name containing '..'.", dataset="acme/a..b"),
        bad_manifest("dataset-uppercase", "Dataset name with capitals.", dataset="Acme/Books"),
        bad_manifest("dataset-no-namespace", "Dataset name without a namespace.", dataset="books"),
        bad_manifest("version-zero", "version 0.", version=0),
        bad_manifest("version-string", 'version as the string "1" (no coercion).', version="1"),
        bad_manifest("version-bool", "version as true (booleans are not integers).", version=True),
        bad_manifest("previous-on-v1", "Version 1 with a previous digest.", previous="00" * 32),
        bad_manifest("no-previous-on-v2", "Version 2 with previous null.", version=2),
        bad_manifest(
            "timestamp-fraction",
            "created with fractional seconds.",
            created="2024-05-01T09:30:00.5Z",
        ),
        bad_manifest(
            "timestamp-offset",
            "created with +00:00 instead of Z.",
            created="2024-05-01T09:30:00+00:00",
        ),
        bad_manifest(
            "timestamp-impossible", "created on February 30th.", created="2024-02-30T09:30:00Z"
        ),
        bad_manifest(
            "timestamp-non-ascii-digits",
            "created with Arabic-Indic digits.",
            created="\u0662\u0660\u0662\u0664-05-01T09:30:00Z",
        ),
        bad_manifest(
            "publisher-uppercase-hex",
            "publisher key id in upper-case hex.",
            publisher=PUB.keyid.upper(),
        ),
        bad_manifest("license-not-spdx", "license with a space.", license="MIT License"),
        bad_manifest("chunk-bytes-not-power-of-two", "chunk_bytes 100000.", chunk_bytes=100_000),
        bad_manifest("chunk-bytes-too-small", "chunk_bytes 32768.", chunk_bytes=32_768),
        bad_manifest(
            "total-rows-mismatch", "total_rows is not the sum.", total_rows=m1["total_rows"] + 1
        ),
        bad_manifest(
            "total-bytes-mismatch", "total_bytes is not the sum.", total_bytes=m1["total_bytes"] - 1
        ),
        bad_manifest(
            "shard-listed-twice",
            "The same shard twice (totals adjusted).",
            shards=[shard0, shard0],
            total_rows=2 * shard0["rows"],
            total_bytes=2 * shard0["bytes"],
        ),
        bad_manifest(
            "shard-digest-short",
            "A shard sha256 of 63 hex digits.",
            shards=[{**shard0, "sha256": shard0["sha256"][:63]}, *m1["shards"][1:]],
        ),
        bad_manifest(
            "shard-zero-rows",
            "A shard with 0 rows.",
            shards=[{**shard0, "rows": 0}, *m1["shards"][1:]],
            total_rows=m1["total_rows"] - shard0["rows"],
        ),
        bad_manifest("no-shards", "An empty shard list.", shards=[], total_rows=1, total_bytes=1),
        bad_manifest("no-columns", "An empty column list.", columns=[]),
        bad_manifest(
            "duplicate-column",
            "Two columns named text.",
            columns=[{"name": "text", "type": "large_string"}] * 2,
        ),
        bad_manifest("terms-empty", "Empty terms.", terms=""),
        bad_manifest("field-null", "description null (a string is required).", description=None),
        # --- manifest semantics (M5-M8) ---
        negative(
            "manifest-other-dataset",
            "A valid manifest of acme/books where acme/papers was asked for.",
            "out_of_scope",
            M1,
            inputs("manifest", dataset="acme/papers"),
        ),
        negative(
            "manifest-from-the-future",
            "created 2024-06-01T12:05:01Z, one second past now + 5 minutes.",
            "verification_failed",
            signed_obj(MANIFEST_T, {**m1, "created": "2024-06-01T12:05:01Z"}, PUB),
            inputs("manifest"),
        ),
        negative(
            "rollback",
            "Version 1 presented after version 2 was trusted.",
            "rollback",
            M1,
            inputs("manifest", previous=[M1, M2]),
        ),
        negative(
            "fork-same-version",
            "Another version 2 (other shards) after version 2 was trusted.",
            "chain_broken",
            M2_FORK,
            inputs("manifest", previous=[M1, M2]),
        ),
        negative(
            "broken-chain",
            "Version 2 whose previous is not version 1's id.",
            "chain_broken",
            signed_obj(MANIFEST_T, {**manifest(2, "11" * 32, (0, 1, 2))}, PUB),
            inputs("manifest", previous=[M1]),
        ),
        negative(
            "fork-successor",
            "Version 3 that links to the forked version 2, after the real version 2.",
            "chain_broken",
            signed(DatasetManifest.model_validate(manifest(3, M2_FORK.digest, (1, 2))), PUB),
            inputs("manifest", previous=[M1, M2]),
        ),
        negative(
            "chain-gap",
            "Version 3 presented when only version 1 is trusted.",
            "chain_broken",
            M3,
            inputs("manifest", previous=[M1]),
        ),
        # --- grants (G5-G12) ---
        negative(
            "grant-expired",
            "now is at the grant's expiry instant (expires is exclusive).",
            "expired",
            GRANT,
            inputs("grant", now="2025-05-11T00:00:00Z", **grant_in),
        ),
        negative(
            "grant-not-yet-valid",
            "now is one second before not_before.",
            "not_yet_valid",
            GRANT,
            inputs("grant", now="2024-05-10T23:59:59Z", **grant_in),
        ),
        negative(
            "grant-other-dataset",
            "A grant for acme/papers checked against acme/books.",
            "out_of_scope",
            signed(grant(dataset="acme/papers"), PUB),
            inputs("grant", **grant_in),
        ),
        negative(
            "grant-other-grantee",
            "The grant names another researcher.",
            "out_of_scope",
            GRANT,
            inputs("grant", manifest=M2, grantee=RES2.keyid),
        ),
        negative(
            "grant-signed-by-non-publisher",
            "A grant signed by a stranger that names itself publisher.",
            "untrusted_key",
            signed(grant(publisher=STRANGER.keyid), STRANGER),
            inputs("grant", **grant_in),
        ),
        negative(
            "grant-by-second-namespace-key",
            "Signed by another key of the namespace, not the manifest's signer.",
            "untrusted_key",
            signed(grant(publisher=PUB2.keyid), PUB2),
            inputs("grant", **grant_in),
        ),
        negative(
            "grant-publisher-field-not-signer",
            "Signed by the manifest's signer, but names another publisher key.",
            "untrusted_key",
            signed(grant(publisher=PUB2.keyid), PUB),
            inputs("grant", **grant_in),
        ),
        negative(
            "grant-revoked",
            "The grant's own id is in the revoked set.",
            "revoked",
            GRANT,
            inputs("grant", revoked=[GRANT.digest], **grant_in),
        ),
        negative(
            "grant-version-above-range",
            "Grant covers versions 1..2, manifest is version 3.",
            "out_of_scope",
            GRANT,
            inputs("grant", manifest=M3, grantee=RES.keyid, previous=[M1, M2]),
        ),
        negative(
            "grant-version-below-range",
            "Grant covers versions 2.., manifest is version 1.",
            "out_of_scope",
            signed(grant(min_version=2, max_version=None), PUB),
            inputs("grant", manifest=M1, grantee=RES.keyid),
        ),
        negative(
            "grant-columns-not-covered",
            "Grant for `text` only; all columns are read.",
            "out_of_scope",
            signed(grant(columns=["text"]), PUB),
            inputs("grant", **grant_in, columns=["text", "book_id"]),
        ),
        negative(
            "grant-group-not-covered",
            "Grant for the default group; book_id (group ids) is read.",
            "out_of_scope",
            signed(grant(groups=["default"], columns=None, spec_version=2), PUB),
            inputs("grant", manifest=M_GROUPED, grantee=RES.keyid, columns=["book_id"]),
        ),
        negative(
            "grant-groups-at-spec-version-1",
            "A grant naming groups that says spec_version 1.",
            "malformed",
            signed_obj(GRANT_T, _grant_obj(groups=["default"]), PUB),
            inputs("grant", manifest=M_GROUPED, grantee=RES.keyid),
        ),
        negative(
            "manifest-groups-at-spec-version-1",
            "Column groups in a manifest that says spec_version 1.",
            "malformed",
            signed_obj(MANIFEST_T, {**grouped_manifest(), "spec_version": 1}, PUB),
            inputs("manifest"),
        ),
        negative(
            "manifest-group-blob-missing",
            "A shard without its column group's blob.",
            "malformed",
            signed_obj(MANIFEST_T, _without_group_blob(), PUB),
            inputs("manifest"),
        ),
        negative(
            "manifest-group-takes-every-column",
            "A column group naming every column (nothing left for default).",
            "malformed",
            signed_obj(
                MANIFEST_T,
                {
                    **grouped_manifest(),
                    "column_groups": [{"name": "ids", "columns": ["book_id", "text"]}],
                },
                PUB,
            ),
            inputs("manifest"),
        ),
        negative(
            "grant-window-inverted",
            "expires before not_before.",
            "malformed",
            signed_obj(GRANT_T, _grant_obj(expires="2024-05-01T00:00:00Z"), PUB),
            inputs("grant", **grant_in),
        ),
        negative(
            "grant-versions-inverted",
            "max_version below min_version.",
            "malformed",
            signed_obj(GRANT_T, _grant_obj(min_version=3, max_version=2), PUB),
            inputs("grant", **grant_in),
        ),
        # --- other statements ---
        negative(
            "request-other-terms",
            "The request accepted other terms.",
            "out_of_scope",
            signed(REQUEST.model_copy(update={"terms_sha256": "00" * 32}), RES),
            inputs("request", trusted_keys=[RES.keyid], manifest=M1),
        ),
        negative(
            "request-accept-terms-false",
            "accept_terms false.",
            "malformed",
            signed_obj(REQUEST_T, {**REQUEST.model_dump(mode="json"), "accept_terms": False}, RES),
            inputs("request", trusted_keys=[RES.keyid]),
        ),
        negative(
            "request-accept-terms-one",
            "accept_terms 1 instead of true.",
            "malformed",
            signed_obj(REQUEST_T, {**REQUEST.model_dump(mode="json"), "accept_terms": 1}, RES),
            inputs("request", trusted_keys=[RES.keyid]),
        ),
        negative(
            "request-signed-by-other",
            "Request naming researcher, signed by researcher_other.",
            "untrusted_key",
            signed(REQUEST, RES2),
            inputs("request", trusted_keys=[RES.keyid]),
        ),
        negative(
            "revocation-by-stranger",
            "A revocation signed by a stranger.",
            "untrusted_key",
            signed(REVOCATION.model_copy(update={"publisher": STRANGER.keyid}), STRANGER),
            inputs("revocation", trusted_keys=[PUB.keyid]),
        ),
        negative(
            "rotation-missing-new-signature",
            "Rotation signed by the old key only.",
            "bad_signature",
            signed(ROTATION, PUB),
            inputs("key_rotation", trusted_keys=[PUB.keyid]),
        ),
        negative(
            "rotation-new-signature-invalid",
            "The new key's signature is over other bytes.",
            "bad_signature",
            Envelope(
                payload_type=ROTATION.PAYLOAD_TYPE,
                payload=ROTATION.to_payload(),
                signatures=(
                    signed(ROTATION, PUB).signatures[0],
                    _flip_sig(signed(ROTATION, NEW)).signatures[0],
                ),
            ),
            inputs("key_rotation", trusted_keys=[PUB.keyid]),
        ),
        negative(
            "rotation-keyid-mismatch",
            "new_key.keyid is not the sha256 of new_key.public.",
            "malformed",
            signed_obj(
                KeyRotation.PAYLOAD_TYPE,
                {**rot_obj, "new_key": {**rot_obj["new_key"], "keyid": STRANGER.keyid}},
                PUB,
                NEW,
            ),
            inputs("key_rotation", trusted_keys=[PUB.keyid]),
        ),
        negative(
            "attestation-other-checkpoint",
            "The attestation is about another checkpoint.",
            "verification_failed",
            signed(ATTESTATION, TRAINER),
            inputs("attestation", trusted_keys=[TRAINER.keyid], checkpoint_sha256="22" * 32),
        ),
        negative(
            "attestation-float-architecture",
            "A float in architecture (check 3).",
            "non_canonical",
            signed_bytes(
                TrainingAttestation.PAYLOAD_TYPE,
                ATTESTATION.to_payload().replace(b'"n_head":4', b'"n_head":4.5'),
                TRAINER,
            ),
            inputs("attestation", trusted_keys=[TRAINER.keyid]),
        ),
    ]
    return rows


def canonical_vectors() -> list[JSON]:
    """Values and their RFC 8785 bytes (given as the value's JSON text and the exact output)."""
    cases: list[tuple[str, Any]] = [
        ("key-order-utf16", {"\ue000": 1, "\U0001f600": 2, "b": 3, "a": 4, "aa": 5, "": 6}),
        ("escapes", {"s": '"\\/\b\f\n\r\t\u0000\u001f\u007f\u2028é\U0001f600'}),
        ("integers", [0, -1, 9007199254740991, -9007199254740991]),
        ("literals", [True, False, None, [], {}]),
        ("nested", {"b": [{"d": 1, "c": 2}], "a": {"z": None, "y": "x"}}),
    ]
    return [
        {
            "name": name,
            "value_json": json.dumps(value, ensure_ascii=True),
            "canonical_utf8_hex": canonical_bytes(value).hex(),
        }
        for name, value in cases
    ]


def chunk_vectors() -> list[JSON]:
    out = []
    for index, size in enumerate(SHARD_SIZES):
        data = shard_bytes(index, size)
        lst = chunk_list(data, CHUNK_BYTES)
        out.append(
            {
                "name": f"shard-{index}",
                "content_rule": f"byte i is (i + {7 * index}) mod 251, for i in 0..{size - 1}",
                "bytes": size,
                "chunk_bytes": CHUNK_BYTES,
                "sha256": hashlib.sha256(data).hexdigest(),
                "chunk_list_hex": lst.hex(),
                "chunks": hashlib.sha256(lst).hexdigest(),
            }
        )
    return out


def auth_vectors() -> list[JSON]:
    nonce = "5a" * 32
    login = login_message(nonce)
    reg = registration_message(
        public_key=RES.public.b64,
        name="Dr. Ada Example",
        kind="researcher",
        affiliation="Example University",
    )
    return [
        {
            "name": "login",
            "key": "researcher",
            "nonce": nonce,
            "message_hex": login.hex(),
            "signature_b64": base64.b64encode(RES.sign(login)).decode(),
        },
        {
            "name": "registration",
            "key": "researcher",
            "profile": {
                "public_key": RES.public.b64,
                "name": "Dr. Ada Example",
                "kind": "researcher",
                "affiliation": "Example University",
            },
            "message_hex": reg.hex(),
            "signature_b64": base64.b64encode(RES.sign(reg)).decode(),
        },
    ]


def rotation(old: SigningKey, new: SigningKey, reason: str, created: str) -> Envelope:
    """``old`` rotated to ``new``, signed by both (5.5)."""
    statement = KeyRotation(
        old_key=old.keyid,
        new_key=PublicKey.from_verify_key(new.public),
        reason=reason,
        created=_t(created),
    )
    return signed(statement, old, new)


def rotation_vectors() -> list[JSON]:
    """Grants through the rotation chain (SPEC.md 5.2 G2, 5.5): ``M2`` signed by the first
    publisher key, grants signed by its successors, and by keys that are not."""
    first = signed(ROTATION, PUB, NEW)
    second = rotation(NEW, PUB2, "Second rotation.", "2024-05-27T00:00:00Z")
    elsewhere = rotation(STRANGER, NEW, "A rotation of some other key.", "2024-05-25T00:00:00Z")

    def by(key: SigningKey) -> Envelope:
        return signed(grant(publisher=key.keyid, created=_t("2024-05-28T00:00:00Z")), key)

    def inp(*rotations: Envelope) -> JSON:
        base = inputs("grant", manifest=M2, grantee=RES.keyid, trusted_keys=[PUB.keyid])
        return {**base, "rotations": [r.to_json().decode() for r in rotations]}

    good = [
        ("grant-by-successor", "A grant by the key the manifest's signer was rotated to.",
         by(NEW), inp(first), NEW),
        ("grant-by-second-successor", "A grant by the key at the end of a two-link chain.",
         by(PUB2), inp(first, second), PUB2),
        ("grant-by-signer-after-rotation", "The manifest's own signer's grant, made before the "
         "rotation, still verifies with the chain given.", GRANT, inp(first), PUB),
    ]  # fmt: skip
    out = []
    for name, description, env, values, signer in good:
        vector = positive(name, description, env, {**values, "_signer": signer.keyid})
        del vector["inputs"]["_signer"]
        out.append(vector)
    bad = [
        ("grant-by-key-outside-the-chain", "A grant by a key no rotation from the manifest's "
         "signer reaches.", by(STRANGER), inp(first)),
        ("grant-by-successor-without-rotation", "A grant by the new key, with no rotation to "
         "link it to the manifest's signer.", by(NEW), inp()),
        ("grant-through-another-keys-rotation", "A grant by a key some other key was rotated "
         "to: the chain must start at the manifest's signer.", by(NEW),
         inp(elsewhere)),
    ]  # fmt: skip
    return [*out, *(negative(n, d, "untrusted_key", e, i) for n, d, e, i in bad)]


def blake3_vectors() -> JSON:
    """``chunk_digest`` ``blake3`` (SPEC 2.5): the shards of ``chunks.json`` with BLAKE3 chunk
    lists, a manifest of version 1 listing two of them, and the same manifest naming an
    algorithm no verifier implements (``malformed``)."""
    shards = []
    for index, size in enumerate(SHARD_SIZES):
        data = shard_bytes(index, size)
        lst = compute_chunk_list(data, CHUNK_BYTES, "blake3")
        shards.append(
            {
                "name": f"shard-{index}",
                "content_rule": f"byte i is (i + {7 * index}) mod 251, for i in 0..{size - 1}",
                "bytes": size,
                "chunk_bytes": CHUNK_BYTES,
                "chunk_digest": "blake3",
                "sha256": hashlib.sha256(data).hexdigest(),
                "chunk_list_hex": lst.hex(),
                "chunks": hashlib.sha256(lst).hexdigest(),
            }
        )
    base = manifest(1, None, (0, 1))
    for entry, vector in zip(base["shards"], shards, strict=False):
        entry["chunks"] = vector["chunks"]
    good = signed(DatasetManifest.model_validate({**base, "chunk_digest": "blake3"}), PUB)
    unknown = signed_obj(MANIFEST_T, {**base, "chunk_digest": "sha3-256"}, PUB)
    check = inputs("manifest", dataset=DATASET)
    valid = positive(
        "manifest-blake3-chunks",
        "Version 1 of acme/books whose chunk lists are BLAKE3 (shard-0 and shard-1 above).",
        good,
        {**check, "_signer": PUB.keyid},
    )
    del valid["inputs"]["_signer"]
    bad = negative(
        "manifest-unknown-chunk-digest",
        "The same manifest naming chunk_digest sha3-256, which no verifier implements.",
        "malformed",
        unknown,
        check,
    )
    return {"shards": shards, "vectors": [valid, bad]}


def build() -> dict[str, JSON]:
    """Every vector file's content by file name."""
    common: JSON = {"spec": "SPEC.md section 10", "generator": "scripts/gen_vectors.py"}
    return {
        "keys.json": {**common, "keys": {name: key_entry(key) for name, key in KEYS.items()}},
        "positive.json": {**common, "vectors": positives()},
        "negative.json": {**common, "vectors": negatives()},
        "canonical.json": {**common, "vectors": canonical_vectors()},
        "chunks.json": {**common, "vectors": chunk_vectors()},
        "auth.json": {**common, "vectors": auth_vectors()},
        "rotation.json": {**common, "vectors": rotation_vectors()},
        "chunks_blake3.json": {**common, **blake3_vectors()},
    }


def render(content: JSON) -> bytes:
    return (json.dumps(content, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def write(out: Path, files: dict[str, JSON] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in (files or build()).items():
        path = out / name
        path.write_bytes(render(content))
        written.append(path)
    return written


def main(argv: list[str] | None = None, *, echo: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=VECTORS_DIR, help="output folder")
    args = parser.parse_args(argv)
    for path in write(args.out):
        echo(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
