"""Property-based tests: every statement round-trips through canonical JSON and a signature, and
no change to signed bytes is ever accepted as something else."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ostraca.protocol_spec import (
    AccessGrant,
    AccessRequest,
    Column,
    ConsumedDataset,
    DatasetManifest,
    Envelope,
    KeyRotation,
    OstracaError,
    PublicKey,
    Revocation,
    ShardEntry,
    SigningKey,
    Statement,
    TrainingAttestation,
    sign_envelope,
    sign_statement,
    verify_attestation,
    verify_grant,
    verify_key_rotation,
    verify_manifest,
    verify_request,
    verify_revocation,
)
from ostraca.protocol_spec.models import STATEMENT_TYPES

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEY = SigningKey.from_seed(bytes(range(32)))
NEW = SigningKey.from_seed(bytes(range(1, 33)))
GRANTEE = SigningKey.from_seed(bytes(range(2, 34)))
NOW = datetime(2030, 1, 1, tzinfo=UTC)

hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)
names = st.from_regex(r"[a-z0-9]{1,8}/[a-z0-9][a-z0-9._-]{0,6}[a-z0-9]", fullmatch=True).filter(
    lambda s: ".." not in s
)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
nonempty = texts.filter(bool)
times = st.integers(min_value=0, max_value=4_000_000_000).map(
    lambda n: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
)
past = times.filter(lambda t: t <= NOW)
counts = st.integers(min_value=1, max_value=2**53 - 1)


@st.composite
def manifests(draw: st.DrawFn) -> DatasetManifest:
    shards = draw(
        st.lists(
            st.builds(
                ShardEntry,
                sha256=hexes,
                bytes=st.integers(1, 2**40),
                rows=st.integers(1, 2**30),
                chunks=hexes,
            ),
            min_size=1,
            max_size=5,
            unique_by=lambda s: s.sha256,
        )
    )
    version = draw(st.integers(1, 1000))
    cols = draw(st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=4, unique=True))
    return DatasetManifest(
        dataset=draw(names),
        version=version,
        previous=None if version == 1 else draw(hexes),
        created=draw(past),
        publisher=KEY.keyid,
        license=draw(st.sampled_from(["MIT", "CC-BY-4.0", "LicenseRef-acme-1"])),
        terms=draw(nonempty),
        description=draw(texts),
        arrow_schema=base64.b64encode(draw(st.binary(min_size=1, max_size=30))).decode(),
        columns=[Column(name=c, type="large_string") for c in cols],
        chunk_bytes=2 ** draw(st.integers(16, 26)),
        shards=shards,
        total_rows=sum(s.rows for s in shards),
        total_bytes=sum(s.bytes for s in shards),
    )


@st.composite
def grants(draw: st.DrawFn) -> AccessGrant:
    lo = draw(st.integers(1, 100))
    start = draw(times)
    return AccessGrant(
        dataset=draw(names),
        publisher=KEY.keyid,
        grantee=draw(hexes),
        request=draw(st.none() | hexes),
        min_version=lo,
        max_version=draw(st.none() | st.integers(lo, lo + 100)),
        columns=draw(
            st.none()
            | st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True)
        ),
        not_before=start,
        expires=start + timedelta(seconds=draw(st.integers(1, 10**8))),
        created=draw(times),
    )


def _others(draw: st.DrawFn) -> Statement:
    kind = draw(st.sampled_from(["request", "revocation", "rotation", "attestation"]))
    if kind == "request":
        return AccessRequest(
            dataset=draw(names),
            requester=KEY.keyid,
            purpose=draw(nonempty),
            terms_sha256=draw(hexes),
            accept_terms=True,
            created=draw(past),
            nonce=draw(st.binary(min_size=16, max_size=16)).hex(),
        )
    if kind == "revocation":
        return Revocation(
            dataset=draw(names),
            publisher=KEY.keyid,
            grant=draw(hexes),
            reason=draw(texts),
            created=draw(past),
        )
    if kind == "rotation":
        return KeyRotation(
            old_key=KEY.keyid,
            new_key=PublicKey.from_verify_key(NEW.public),
            reason=draw(texts),
            created=draw(past),
        )
    return TrainingAttestation(
        trainer=KEY.keyid,
        checkpoint_sha256=draw(hexes),
        created=draw(past),
        steps=draw(st.integers(0, 2**53 - 1)),
        tokens=draw(st.integers(0, 2**53 - 1)),
        architecture=draw(
            st.dictionaries(
                st.text(max_size=5),
                st.integers(-5, 5) | st.booleans() | st.text(max_size=5),
                max_size=4,
            )
        ),
        datasets=[
            ConsumedDataset(
                dataset=draw(names),
                version=draw(counts),
                manifest=draw(hexes),
                license="MIT",
                terms_sha256=draw(hexes),
                grants=draw(st.lists(hexes, min_size=1, max_size=3)),
                shards_consumed=draw(st.integers(0, 100)),
            )
        ],
    )


statements = st.one_of(manifests(), grants(), st.composite(_others)())


def _verify(env: Envelope, statement: Statement) -> Statement:
    """Verify ``env`` as ``statement``'s kind, with inputs under which ``statement`` is valid."""
    keys = {KEY.keyid: KEY.public}
    if isinstance(statement, DatasetManifest):
        return verify_manifest(env, publisher_keys=keys, now=NOW).statement
    if isinstance(statement, AccessGrant):
        manifest = verify_manifest(
            sign_statement(_manifest_for(statement), [KEY]), publisher_keys=keys, now=NOW
        )
        when = statement.not_before
        return verify_grant(env, manifest=manifest, grantee=statement.grantee, now=when).statement
    if isinstance(statement, AccessRequest):
        return verify_request(env, requester_key=KEY.public, now=NOW).statement
    if isinstance(statement, Revocation):
        return verify_revocation(env, publisher_key=KEY.public, now=NOW).statement
    if isinstance(statement, KeyRotation):
        return verify_key_rotation(env, old_key=KEY.public, now=NOW).statement
    assert isinstance(statement, TrainingAttestation)
    return verify_attestation(env, trainer_key=KEY.public, now=NOW).statement


def _verify_as(env: Envelope, model: type[Statement]) -> Statement:
    """Verify ``env`` as a ``model`` statement with fixed inputs (grants: a fixed manifest)."""
    keys = {KEY.keyid: KEY.public}
    if model is AccessGrant:
        manifest = verify_manifest(
            sign_statement(FIXED_MANIFEST, [KEY]), publisher_keys=keys, now=NOW
        )
        return verify_grant(env, manifest=manifest, grantee=GRANTEE.keyid, now=NOW).statement
    if model is DatasetManifest:
        return verify_manifest(env, publisher_keys=keys, now=NOW).statement
    if model is AccessRequest:
        return verify_request(env, requester_key=KEY.public, now=NOW).statement
    if model is Revocation:
        return verify_revocation(env, publisher_key=KEY.public, now=NOW).statement
    if model is KeyRotation:
        return verify_key_rotation(env, old_key=KEY.public, now=NOW).statement
    return verify_attestation(env, trainer_key=KEY.public, now=NOW).statement


def _manifest_for(grant: AccessGrant) -> DatasetManifest:
    shard = ShardEntry(sha256="ab" * 32, bytes=1, rows=1, chunks="cd" * 32)
    return DatasetManifest(
        dataset=grant.dataset,
        version=grant.min_version,
        previous=None if grant.min_version == 1 else "ef" * 32,
        created=datetime(2000, 1, 1, tzinfo=UTC),
        publisher=KEY.keyid,
        license="MIT",
        terms="t",
        arrow_schema="AA==",
        columns=[Column(name=c, type="int64") for c in (grant.columns or ["x"])],
        chunk_bytes=65536,
        shards=[shard],
        total_rows=1,
        total_bytes=1,
    )


FIXED_MANIFEST = DatasetManifest(
    dataset="acme/books",
    version=1,
    previous=None,
    created=datetime(2000, 1, 1, tzinfo=UTC),
    publisher=KEY.keyid,
    license="MIT",
    terms="t",
    arrow_schema="AA==",
    columns=[Column(name="x", type="int64")],
    chunk_bytes=65536,
    shards=[ShardEntry(sha256="ab" * 32, bytes=1, rows=1, chunks="cd" * 32)],
    total_rows=1,
    total_bytes=1,
)


def _sign(statement: Statement) -> Envelope:
    keys = [KEY, NEW] if isinstance(statement, KeyRotation) else [KEY]
    return sign_statement(statement, keys)


@PROPS
@given(statements)
def test_every_statement_round_trips_through_canonical_json_and_signature(
    statement: Statement,
) -> None:
    payload = statement.to_payload()
    again = type(statement).model_validate_json(payload)
    assert again == statement
    assert again.to_payload() == payload
    env = Envelope.from_json(_sign(statement).to_json())
    assert env.payload == payload
    verified = _verify(env, statement)
    assert verified == statement
    assert verified.digest == env.digest


@PROPS
@given(statements, st.data())
def test_flipping_any_payload_or_signature_byte_is_refused(
    statement: Statement, data: st.DataObject
) -> None:
    env = _sign(statement)
    target = data.draw(st.sampled_from(["payload", "sig"]))
    blob = env.payload if target == "payload" else env.signatures[0].sig
    pos = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = blob[:pos] + bytes([blob[pos] ^ (1 << bit)]) + blob[pos + 1 :]
    if target == "payload":
        bad = Envelope(payload_type=env.payload_type, payload=flipped, signatures=env.signatures)
    else:
        sigs = (
            type(env.signatures[0])(keyid=env.signatures[0].keyid, sig=flipped),
            *env.signatures[1:],
        )
        bad = Envelope(payload_type=env.payload_type, payload=env.payload, signatures=sigs)
    try:
        _verify(Envelope.from_json(bad.to_json()), statement)
    except OstracaError:
        return
    raise AssertionError("a flipped byte was accepted")


@PROPS
@given(statements, st.data())
def test_flipping_any_envelope_json_byte_is_refused_or_harmless(
    statement: Statement, data: st.DataObject
) -> None:
    raw = _sign(statement).to_json()
    pos = data.draw(st.integers(0, len(raw) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    mutated = raw[:pos] + bytes([new_byte]) + raw[pos + 1 :]
    try:
        verified = _verify(Envelope.from_json(mutated), statement)
    except OstracaError:
        return
    # A few changes are benign: whitespace, a base64 character's unused low bits, a keyid of a
    # signature that is not the trusted one. Then the statement must be exactly the original.
    assert verified == statement
    assert verified.to_payload() == statement.to_payload()


@PROPS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_envelope_parser(blob: bytes) -> None:
    try:
        env = Envelope.from_json(blob)
    except OstracaError:
        return
    try:
        verify_manifest(env, publisher_keys={KEY.keyid: KEY.public}, now=NOW)
    except OstracaError:
        return
    raise AssertionError("random bytes verified as a manifest")


@PROPS
@given(
    st.dictionaries(
        st.sampled_from(["dataset", "version", "publisher", "created", "spec_version", "x"])
        | st.text(max_size=6),
        st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.lists(st.integers()),
        max_size=6,
    )
)
def test_arbitrary_signed_objects_never_crash_verification(obj: dict[str, Any]) -> None:
    try:
        payload = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        data = payload.encode()
    except UnicodeEncodeError:
        data = repr(obj).encode()
    for model in STATEMENT_TYPES:
        env = sign_envelope(model.PAYLOAD_TYPE, data, [KEY])
        try:
            _verify_as(env, model)
        except OstracaError:
            continue
        raise AssertionError(f"{obj!r} verified as {model.__name__}")
