"""Shard encryption and key wrapping (ENCRYPTION.md): round trips, the sealed layout, and every
bad input as a typed error (wrong key, tampered ciphertext or tag, reordered, swapped, truncated
chunks, a wrapped key meant for someone else, a group without a key)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ostraca.protocol_spec import (
    MalformedError,
    SigningKey,
    UntrustedKeyError,
    VerificationError,
    sign_statement,
)
from ostraca.protocol_spec.chunks import chunk_count
from ostraca.protocol_spec.crypto import (
    TAG_BYTES,
    DataKey,
    GroupContext,
    ShardCipher,
    chunk_aad,
    chunk_nonce,
    ciphertext_size,
    plaintext_size,
)
from ostraca.protocol_spec.enckeys import (
    EncryptionKey,
    EncryptionPrivateKey,
    KeyGrant,
    data_key_for,
    make_key_grant,
    open_key_grant,
    unwrap_data_key,
    verify_encryption_key,
    verify_key_grant,
    wrap_data_key,
)
from ostraca.protocol_spec.errors import (
    DecryptionError,
    MissingKeyError,
    WrongKeyError,
    WrongRecipientError,
)

CHUNK = 256
CTX = GroupContext(dataset="acme/data", version=3, group="default")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY = DataKey(bytes(range(32)))
PUBLISHER = SigningKey.from_seed(b"\x01" * 32)
RESEARCHER = SigningKey.from_seed(b"\x02" * 32)
OTHER = SigningKey.from_seed(b"\x03" * 32)


def plaintext(n: int) -> bytes:
    return bytes((i * 7 + 3) % 256 for i in range(n))


def cipher(shard: int = 0, context: GroupContext = CTX, key: DataKey = KEY) -> ShardCipher:
    return ShardCipher(key, context=context, shard=shard, chunk_bytes=CHUNK)


def chunks_of(sealed: bytes) -> list[bytes]:
    return [sealed[i : i + CHUNK] for i in range(0, len(sealed), CHUNK)]


@pytest.mark.parametrize("n", [0, 1, CHUNK - TAG_BYTES - 1, CHUNK - TAG_BYTES, 1000, 2400])
def test_round_trip_and_layout(n: int) -> None:
    sealed = cipher().seal(plaintext(n))
    assert len(sealed) == ciphertext_size(n, CHUNK)
    assert plaintext_size(len(sealed), CHUNK) == n
    # Every sealed chunk but the last is exactly chunk_bytes: one chunk-list digest per chunk.
    assert all(len(c) == CHUNK for c in chunks_of(sealed)[:-1])
    assert len(chunks_of(sealed)) == chunk_count(len(sealed), CHUNK)
    assert cipher().open(sealed) == plaintext(n)


def test_chunk_is_ciphertext_then_tag_under_the_derived_nonce() -> None:
    sealed = cipher(shard=5).seal(plaintext(300))
    first = chunks_of(sealed)[0]
    nonce = chunk_nonce(5, 0)
    assert nonce == b"\x00\x00\x00\x05" + bytes(8)
    aad = chunk_aad(CTX, 5, 0, final=False)
    assert AESGCM(KEY.raw).decrypt(nonce, first, aad) == plaintext(300)[: CHUNK - TAG_BYTES]


def test_ciphertext_hides_the_plaintext() -> None:
    pt = b"secret-row " * 100
    sealed = cipher().seal(pt)
    assert b"secret-row" not in sealed


def test_wrong_key() -> None:
    sealed = cipher().seal(plaintext(700))
    with pytest.raises(DecryptionError):
        cipher(key=DataKey(bytes(32))).open(sealed)
    with pytest.raises(WrongKeyError):
        DataKey(bytes(32)).check(KEY.commitment(CTX), CTX)
    KEY.check(KEY.commitment(CTX), CTX)


@pytest.mark.parametrize("where", [0, CHUNK - 1, CHUNK + 3, -1])
def test_tampered_ciphertext_or_tag(where: int) -> None:
    sealed = bytearray(cipher().seal(plaintext(700)))
    sealed[where] ^= 1
    with pytest.raises(DecryptionError):
        cipher().open(bytes(sealed))


def test_reordered_chunks() -> None:
    c = chunks_of(cipher().seal(plaintext(700)))
    with pytest.raises(DecryptionError):
        cipher().open(b"".join([c[1], c[0], *c[2:]]))


def test_chunk_swapped_between_shards_versions_groups() -> None:
    c = chunks_of(cipher(shard=0).seal(plaintext(700)))
    other_shard = chunks_of(cipher(shard=1).seal(plaintext(700)))
    with pytest.raises(DecryptionError):
        cipher(shard=0).open(b"".join([other_shard[0], *c[1:]]))
    for context in (
        GroupContext(dataset="acme/data", version=4, group="default"),
        GroupContext(dataset="acme/data", version=3, group="pii"),
        GroupContext(dataset="acme/other", version=3, group="default"),
    ):
        with pytest.raises(DecryptionError):
            cipher(context=context).open(b"".join(c))


def test_truncated_shard() -> None:
    c = chunks_of(cipher().seal(plaintext(700)))
    # Dropping whole chunks: the new last chunk was sealed as not final.
    with pytest.raises(DecryptionError):
        cipher().open(b"".join(c[:-1]))
    # Cutting into the last chunk: its tag no longer verifies.
    with pytest.raises(DecryptionError):
        cipher().open(b"".join(c)[:-5])
    # A length no plaintext seals to.
    with pytest.raises(DecryptionError):
        plaintext_size(CHUNK + 10, CHUNK)


def test_failed_open_leaves_no_plaintext_in_the_buffer() -> None:
    sealed = bytearray(cipher().seal(plaintext(100)))
    sealed[-1] ^= 1
    out = bytearray(100)
    with pytest.raises(DecryptionError):
        cipher().open_chunk_into(0, bytes(sealed), memoryview(out), final=True)
    assert out == bytes(100)


def test_bad_parameters_are_malformed() -> None:
    with pytest.raises(MalformedError):
        DataKey(b"short")
    with pytest.raises(MalformedError):
        ShardCipher(KEY, context=CTX, shard=2**32, chunk_bytes=CHUNK)
    with pytest.raises(MalformedError):
        ShardCipher(KEY, context=CTX, shard=0, chunk_bytes=TAG_BYTES)
    assert "…" in repr(KEY)
    assert KEY.raw.hex() not in repr(KEY)


# --- encryption keys and key grants ---------------------------------------------------------

RESEARCHER_ENC = EncryptionPrivateKey.derive(RESEARCHER)
PUBLISHER_ENC = EncryptionPrivateKey.derive(PUBLISHER)


def test_derived_key_is_stable_and_per_identity_and_epoch() -> None:
    assert EncryptionPrivateKey.derive(RESEARCHER).public == RESEARCHER_ENC.public
    assert EncryptionPrivateKey.derive(RESEARCHER, epoch=1).public != RESEARCHER_ENC.public
    assert PUBLISHER_ENC.public != RESEARCHER_ENC.public
    again = EncryptionPrivateKey(RESEARCHER_ENC.secret)
    assert again.public == RESEARCHER_ENC.public


def test_wrap_round_trip_and_binding() -> None:
    wrapped = wrap_data_key(
        KEY, recipient=RESEARCHER_ENC.public, context=CTX, grantee=RESEARCHER.keyid
    )
    assert unwrap_data_key(wrapped, private=RESEARCHER_ENC, context=CTX, grantee=RESEARCHER.keyid)
    # Another private key, another grantee, another version: the wrap does not open.
    for private, context, grantee in (
        (PUBLISHER_ENC, CTX, RESEARCHER.keyid),
        (RESEARCHER_ENC, CTX, OTHER.keyid),
        (RESEARCHER_ENC, GroupContext(dataset="acme/data", version=4, group="default"), None),
    ):
        with pytest.raises(WrongKeyError):
            unwrap_data_key(
                wrapped, private=private, context=context, grantee=grantee or RESEARCHER.keyid
            )


def key_grant(**over: object) -> KeyGrant:
    args: dict[str, object] = {
        "dataset": "acme/data",
        "publisher": PUBLISHER.keyid,
        "grantee": RESEARCHER.keyid,
        "recipient": RESEARCHER_ENC.public,
        "grant": "ab" * 32,
        "created": NOW,
    }
    args.update(over)
    return make_key_grant({3: {"default": KEY}}, **args)  # type: ignore[arg-type]


def test_key_grant_signed_verified_opened() -> None:
    env = sign_statement(key_grant(), [PUBLISHER])
    v = verify_key_grant(
        env,
        publisher_keys={PUBLISHER.keyid: PUBLISHER.public},
        now=NOW,
        grantee=RESEARCHER.keyid,
        recipient=RESEARCHER_ENC.public.keyid,
    )
    keys = open_key_grant(v.statement, private=RESEARCHER_ENC)
    assert data_key_for(keys, CTX, commitment=KEY.commitment(CTX)) == KEY


def test_key_grant_meant_for_another_grantee() -> None:
    env = sign_statement(key_grant(), [PUBLISHER])
    trusted = {PUBLISHER.keyid: PUBLISHER.public}
    with pytest.raises(WrongRecipientError):
        verify_key_grant(env, publisher_keys=trusted, now=NOW, grantee=OTHER.keyid)
    with pytest.raises(WrongRecipientError):
        verify_key_grant(env, publisher_keys=trusted, now=NOW, recipient=PUBLISHER_ENC.public.keyid)
    with pytest.raises(WrongRecipientError):
        open_key_grant(key_grant(), private=PUBLISHER_ENC)
    # A grant relabelled for another grantee (re-signed by the publisher) still does not open:
    # the wrap's HPKE info binds the grantee it was made for.
    relabelled = key_grant().model_copy(update={"grantee": OTHER.keyid})
    with pytest.raises(WrongKeyError):
        open_key_grant(relabelled, private=RESEARCHER_ENC)


def test_key_grant_with_a_wrong_commitment_is_a_wrong_key() -> None:
    g = key_grant()
    item = g.keys[0].model_copy(update={"key_commitment": "00" * 32})
    with pytest.raises(WrongKeyError):
        open_key_grant(g.model_copy(update={"keys": [item]}), private=RESEARCHER_ENC)


def test_group_without_a_key() -> None:
    keys = open_key_grant(key_grant(), private=RESEARCHER_ENC)
    pii = GroupContext(dataset="acme/data", version=3, group="pii")
    with pytest.raises(MissingKeyError) as err:
        data_key_for(keys, pii, commitment="00" * 32)
    assert err.value.code == "missing_key"
    assert isinstance(err.value, VerificationError)


def test_key_grant_signed_by_someone_else_is_untrusted() -> None:
    env = sign_statement(key_grant(publisher=OTHER.keyid), [OTHER])
    with pytest.raises(UntrustedKeyError):
        verify_key_grant(env, publisher_keys={PUBLISHER.keyid: PUBLISHER.public}, now=NOW)


def test_escrow_grant_is_the_publishers_own() -> None:
    escrow = key_grant(grantee=PUBLISHER.keyid, recipient=PUBLISHER_ENC.public, grant=None)
    assert open_key_grant(escrow, private=PUBLISHER_ENC)[3, "default"] == KEY
    with pytest.raises(MalformedError):
        KeyGrant.from_json_obj({**escrow.model_dump(mode="json"), "grantee": RESEARCHER.keyid})


def encryption_key_statement(owner: SigningKey, private: EncryptionPrivateKey) -> EncryptionKey:
    return EncryptionKey(
        owner=owner.keyid,
        public=private.public.b64,
        keyid=private.public.keyid,
        created=NOW,
    )


def test_encryption_key_bound_to_identity() -> None:
    env = sign_statement(encryption_key_statement(RESEARCHER, RESEARCHER_ENC), [RESEARCHER])
    v = verify_encryption_key(env, owner_keys={RESEARCHER.keyid: RESEARCHER.public}, now=NOW)
    assert v.statement.to_public_key() == RESEARCHER_ENC.public
    # Someone else's signature over a statement naming the researcher: not the owner.
    forged = sign_statement(encryption_key_statement(RESEARCHER, PUBLISHER_ENC), [OTHER])
    with pytest.raises(UntrustedKeyError):
        verify_encryption_key(forged, owner_keys={OTHER.keyid: OTHER.public}, now=NOW)
    with pytest.raises(MalformedError):
        EncryptionKey.from_json_obj(
            {
                **encryption_key_statement(RESEARCHER, RESEARCHER_ENC).model_dump(mode="json"),
                "keyid": hashlib.sha256(b"x").hexdigest(),
            }
        )


def test_wrapped_key_of_the_wrong_size_is_malformed() -> None:
    g = key_grant()
    with pytest.raises(MalformedError):
        KeyGrant.from_json_obj(
            {
                **g.model_dump(mode="json"),
                "keys": [
                    {
                        **g.keys[0].model_dump(mode="json"),
                        "wrapped": base64.b64encode(b"x").decode(),
                    }
                ],
            }
        )
