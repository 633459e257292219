"""Data keys between the registry and this client (ENCRYPTION.md 4.4-6): the caller's encryption
key registered, the publisher's escrow, key grants for approved grantees, and a reader's
:class:`~.encryption.KeyRing`.

Every statement fetched is verified before use: encryption keys against the Ed25519 key a grant
names (never against whatever keys the registry lists), key grants against the namespace's
trusted publisher keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from ostraca.protocol_spec import (
    AccessGrant,
    ConflictError,
    DatasetManifest,
    Envelope,
    Verified,
    VerifyKey,
    split_dataset,
    utc_now,
)
from ostraca.protocol_spec.crypto import DataKey
from ostraca.protocol_spec.enckeys import (
    EncryptionPrivateKey,
    EncryptionPublicKey,
    verify_encryption_key,
)
from ostraca.protocol_spec.errors import MissingKeyError
from ostraca.protocol_spec.wire import (
    EncryptionKeyItem,
    EncryptionKeyList,
    GrantItem,
    KeyGrantItem,
    KeyGrantList,
)

from .encryption import (
    KeyRing,
    covers,
    encryption_key_envelope,
    identity_encryption_key,
    key_grant_envelope,
)
from .wire import dataset_path, parse

if TYPE_CHECKING:  # the client calls this module; this module only calls the client back
    from .api import RegistryClient

__all__ = [
    "approve_keys",
    "current_encryption_key",
    "ensure_encryption_key",
    "grant_keys",
    "publish_keys",
    "reader_keys",
]


def ensure_encryption_key(client: RegistryClient) -> EncryptionPrivateKey:
    """The caller's identity-derived encryption key, registered on the registry if it is not."""
    private = identity_encryption_key(client.key)
    listed = parse(
        client._send("GET", f"/v1/principals/{client.keyid}/encryption-keys"), EncryptionKeyList
    )
    if all(item.keyid != private.public.keyid for item in listed.items):
        env = encryption_key_envelope(client.key, private, created=utc_now())
        with contextlib.suppress(ConflictError):  # registered meanwhile by another run
            client._post_envelope("/v1/encryption-keys", env, EncryptionKeyItem)
    return private


def current_encryption_key(
    client: RegistryClient, grantee: str, *, now: datetime
) -> EncryptionPublicKey | None:
    """The grantee's newest encryption key signed by exactly the key ``grantee`` (E1-E6)."""
    principal = client.get_principal(grantee)
    trusted = {k.keyid: k.to_verify_key() for k in principal.keys if k.keyid == grantee}
    trusted |= {k.keyid: k.to_verify_key() for k in principal.rotated_keys if k.keyid == grantee}
    listed = parse(
        client._send("GET", f"/v1/principals/{principal.keyid}/encryption-keys"), EncryptionKeyList
    )
    newest = None
    for item in listed.items:
        v = verify_encryption_key(Envelope.from_dict(item.envelope), owner_keys=trusted, now=now)
        if newest is None or v.statement.created >= newest.created:
            newest = v.statement
    return None if newest is None else newest.to_public_key()


def key_grants(client: RegistryClient, dataset: str) -> list[KeyGrantItem]:
    response = client._send("GET", f"{dataset_path(dataset)}/key-grants", auth=True)
    return parse(response, KeyGrantList).items


def post_key_grant(client: RegistryClient, envelope: Envelope) -> None:
    with contextlib.suppress(ConflictError):  # stored already (a re-run after a lost answer)
        client._post_envelope("/v1/key-grants", envelope, KeyGrantItem)


def escrow_ring(
    client: RegistryClient, dataset: str, *, publisher_keys: Mapping[str, VerifyKey], now: datetime
) -> KeyRing:
    """Every data key of ``dataset`` from the caller's own escrow (ENCRYPTION.md 4.5)."""
    ring = KeyRing(dataset)
    private = identity_encryption_key(client.key)
    ring.add(
        [Envelope.from_dict(i.envelope) for i in key_grants(client, dataset) if i.grant_id is None],
        publisher_keys=publisher_keys,
        grantee=client.keyid,
        privates={private.public.keyid: private},
        grants={None: None},
        now=now,
    )
    return ring


def _covered(
    grant: GrantItem, keys: Mapping[int, Mapping[str, DataKey]], now: datetime
) -> dict[int, dict[str, DataKey]]:
    """The keys of the versions and groups a live ``grant`` covers."""
    if grant.revoked or grant.expires <= now:
        return {}
    out = {
        v: {g: k for g, k in groups.items() if covers(grant, v, g)} for v, groups in keys.items()
    }
    return {v: groups for v, groups in out.items() if groups}


def grant_keys(
    client: RegistryClient,
    grant: GrantItem,
    keys: Mapping[int, Mapping[str, DataKey]],
    *,
    now: datetime,
) -> bool:
    """Wrap the keys of the versions ``grant`` covers to its grantee's current encryption key
    and store the key grant; ``False`` when there is nothing to wrap or no key to wrap to."""
    covered = _covered(grant, keys, now)
    recipient = current_encryption_key(client, grant.grantee, now=now) if covered else None
    if recipient is None:
        return False
    env = key_grant_envelope(
        client.key,
        covered,
        dataset=grant.dataset,
        grantee=grant.grantee,
        recipient=recipient,
        grant=grant.grant_id,
        created=now,
    )
    post_key_grant(client, env)
    return True


def approve_keys(client: RegistryClient, grant: GrantItem) -> GrantItem:
    """Wrap the escrowed keys of every version and group ``grant`` covers to its grantee
    (ENCRYPTION.md 6, *Approve*; nothing for a dataset without encrypted versions) and return
    ``grant``. Raises :class:`MissingKeyError` when there are keys to wrap and the grantee
    registered no encryption key."""
    now = utc_now()
    publisher_keys = client.namespace_keys(split_dataset(grant.dataset)[0])  # rotated ones too
    ring = escrow_ring(client, grant.dataset, publisher_keys=publisher_keys, now=now)
    keys = ring.keys()
    if _covered(grant, keys, now) and not grant_keys(client, grant, keys, now=now):
        raise MissingKeyError(
            f"grantee {grant.grantee[:16]}… has registered no encryption key: the grant is "
            f"stored, but it opens no encrypted version of {grant.dataset} yet",
            hint="the researcher runs `ostraca register` (or requests again), then approve anew",
        )
    return grant


def publish_keys(
    client: RegistryClient,
    escrow: Envelope,
    keys: Mapping[int, Mapping[str, DataKey]],
    *,
    dataset: str,
) -> None:
    """After a version is published: store its escrow, and wrap its keys for every live grant
    that covers it (ENCRYPTION.md 6)."""
    ensure_encryption_key(client)
    post_key_grant(client, escrow)
    now = utc_now()
    for grant in client.list_grants(dataset=dataset):
        if grant.dataset == dataset and grant.grantee != client.keyid:
            grant_keys(client, grant, keys, now=now)


def reader_keys(
    client: RegistryClient,
    manifest: Verified[DatasetManifest],
    grant: Verified[AccessGrant],
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
) -> KeyRing | None:
    """The data keys the caller's key grants carry for ``manifest`` under ``grant`` (``None``
    for a plaintext version); :class:`MissingKeyError` when an encrypted group has none."""
    m = manifest.statement
    if not m.encryption:
        return None
    ring = KeyRing(m.dataset)
    private = identity_encryption_key(client.key)
    ring.add(
        [Envelope.from_dict(i.envelope) for i in key_grants(client, m.dataset)],
        publisher_keys=publisher_keys,
        grantee=client.keyid,
        privates={private.public.keyid: private},
        grants={grant.digest: grant.statement},
        now=now,
    )
    if not ring.keys().get(m.version):
        raise MissingKeyError(
            f"{m.dataset} version {m.version} is encrypted and no key grant of yours carries "
            "its keys",
            hint="ask the publisher to approve again once your encryption key is registered "
            "(`ostraca register`)",
        )
    return ring
