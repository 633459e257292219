"""Data keys between the registry and this client (ENCRYPTION.md 4.4-6): the caller's encryption
key registered, the publisher's escrow, key grants for approved grantees, and a reader's
:class:`~.encryption.KeyRing`.

Every statement fetched is verified before use: encryption keys against the Ed25519 key a grant
names (never against whatever keys the registry lists), key grants against the namespace's
trusted publisher keys.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
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
    EncryptionKey,
    EncryptionPrivateKey,
    EncryptionPublicKey,
    verify_encryption_key,
)
from ostraca.protocol_spec.errors import MissingKeyError
from ostraca.protocol_spec.keys import SigningKey
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
from .keystore import former_identities
from .tlog import STATEMENTS_PER_CHECK, check_statements
from .wire import dataset_path, parse

if TYPE_CHECKING:  # the client calls this module; this module only calls the client back
    from .api import RegistryClient

__all__ = [
    "MAX_EPOCHS",
    "DerivedKeys",
    "approve_keys",
    "check_logged",
    "current_encryption_key",
    "ensure_encryption_key",
    "escrow_ring",
    "grant_keys",
    "logged_key_grants",
    "own_keys",
    "publish_keys",
    "reader_keys",
    "rewrap_escrow",
    "rotate_encryption_key",
]

MAX_EPOCHS = 64
"""Derived encryption keys per identity a client re-derives (epochs 0-63, ENCRYPTION.md 3.4)."""


class DerivedKeys(Mapping[str, EncryptionPrivateKey]):
    """The encryption keys derived from ``identities`` (ENCRYPTION.md 3.3-3.4), by key id: epoch
    0 of each at once, later epochs (after ``rotate_encryption_key``) derived on a miss, up to
    :data:`MAX_EPOCHS` per identity."""

    def __init__(self, identities: Sequence[SigningKey]) -> None:
        self.identities = list(identities)
        self._next = [1] * len(self.identities)
        self._keys = {
            k.public.keyid: k for k in (identity_encryption_key(i) for i in self.identities)
        }

    def __getitem__(self, keyid: str) -> EncryptionPrivateKey:
        for n, identity in enumerate(self.identities):
            while keyid not in self._keys and self._next[n] < MAX_EPOCHS:
                derived = identity_encryption_key(identity, self._next[n])
                self._keys[derived.public.keyid] = derived
                self._next[n] += 1
        return self._keys[keyid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def grantees(self) -> set[str]:
        """The Ed25519 key ids the derived keys belong to."""
        return {i.keyid for i in self.identities}


def own_keys(client: RegistryClient) -> DerivedKeys:
    """The caller's encryption keys: derived from its identity and from the former identities
    ``rotate-key`` kept beside the identity file (ENCRYPTION.md 3.4)."""
    config = client.config
    former = former_identities(
        config.identity_path, current=client.keyid, passphrase=config.passphrase
    )
    return DerivedKeys([client.key, *(k for k in former if k.keyid != client.keyid)])


def _own_registered(client: RegistryClient) -> list[tuple[datetime, EncryptionPrivateKey]]:
    """``(created, key)`` of each encryption key registered by the caller's current identity."""
    listed = parse(
        client._send("GET", f"/v1/principals/{client.keyid}/encryption-keys"), EncryptionKeyList
    )
    mine = DerivedKeys([client.key])
    return [
        (item.created, mine[item.keyid])
        for item in listed.items
        if item.owner == client.keyid and item.keyid in mine  # `in` derives later epochs
    ]


def _register(client: RegistryClient, private: EncryptionPrivateKey, created: datetime) -> None:
    env = encryption_key_envelope(client.key, private, created=created)
    with contextlib.suppress(ConflictError):  # registered meanwhile by another run
        client._post_envelope("/v1/encryption-keys", env, EncryptionKeyItem)


def ensure_encryption_key(client: RegistryClient) -> EncryptionPrivateKey:
    """The caller's current encryption key (its newest registered one derived from the identity;
    epoch 0, registered now, when there is none)."""
    registered = _own_registered(client)
    if registered:
        return max(registered, key=lambda r: r[0])[1]
    private = identity_encryption_key(client.key)
    _register(client, private, utc_now())
    return private


def rotate_encryption_key(client: RegistryClient) -> EncryptionPrivateKey:
    """Register the identity's next derived encryption key (ENCRYPTION.md 3.4), created after
    every earlier one so it is the current key; key grants wrapped to the earlier keys stay
    readable (the client re-derives them, :class:`DerivedKeys`)."""
    registered = _own_registered(client)
    if len(registered) + 1 >= MAX_EPOCHS:
        raise ConflictError(f"this identity has registered {MAX_EPOCHS - 1} encryption keys")
    newest = max((created for created, _ in registered), default=None)
    now = utc_now().replace(microsecond=0)
    created = now if newest is None or newest < now else newest + timedelta(seconds=1)
    private = identity_encryption_key(client.key, len(registered))
    _register(client, private, created)
    return private


def _newest_encryption_key(
    client: RegistryClient, grantee: str, *, now: datetime
) -> tuple[EncryptionPublicKey, Envelope] | None:
    """The grantee's newest encryption key signed by exactly the key ``grantee`` (E1-E6), with
    its envelope (not yet checked in the log)."""
    principal = client.get_principal(grantee)
    trusted = {k.keyid: k.to_verify_key() for k in principal.keys if k.keyid == grantee}
    trusted |= {k.keyid: k.to_verify_key() for k in principal.rotated_keys if k.keyid == grantee}
    listed = parse(
        client._send("GET", f"/v1/principals/{principal.keyid}/encryption-keys"), EncryptionKeyList
    )
    newest: tuple[EncryptionKey, Envelope] | None = None
    for item in listed.items:
        if item.owner != grantee:  # a key of the principal's other identity (a rotation)
            continue
        env = Envelope.from_dict(item.envelope)
        v = verify_encryption_key(env, owner_keys=trusted, now=now)
        if newest is None or v.statement.created >= newest[0].created:
            newest = v.statement, env
    return None if newest is None else (newest[0].to_public_key(), newest[1])


def current_encryption_key(
    client: RegistryClient, grantee: str, *, now: datetime
) -> EncryptionPublicKey | None:
    """The grantee's newest encryption key signed by exactly the key ``grantee`` (E1-E6), found
    in the registry's transparency log (LOG.md L1-L11: no key shown to this publisher alone)."""
    found = _newest_encryption_key(client, grantee, now=now)
    if found is None:
        return None
    check_logged(client, [found[1]], now=now)
    return found[0]


def check_logged(client: RegistryClient, envelopes: Sequence[Envelope], *, now: datetime) -> None:
    """LOG.md L1-L13 for ``envelopes`` (as many calls as the registry's cap per call needs)."""
    for start in range(0, len(envelopes), STATEMENTS_PER_CHECK):
        check_statements(client, envelopes[start : start + STATEMENTS_PER_CHECK], now=now)


def key_grants(client: RegistryClient, dataset: str) -> list[KeyGrantItem]:
    response = client._send("GET", f"{dataset_path(dataset)}/key-grants", auth=True)
    return parse(response, KeyGrantList).items


def post_key_grant(client: RegistryClient, envelope: Envelope) -> None:
    with contextlib.suppress(ConflictError):  # stored already (a re-run after a lost answer)
        client._post_envelope("/v1/key-grants", envelope, KeyGrantItem)


def _escrows(client: RegistryClient, dataset: str) -> list[KeyGrantItem]:
    return [i for i in key_grants(client, dataset) if i.grant_id is None]


def _open_escrow(
    escrows: Sequence[KeyGrantItem],
    dataset: str,
    privates: DerivedKeys,
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
) -> KeyRing:
    """The data keys of the escrows among ``escrows`` for the identities ``privates`` are
    derived from, each verified against ``publisher_keys`` and those identities' keys. Only
    escrows naming one of them as grantee are read, so only they (or ``publisher_keys``) can
    have signed them (an escrow's grantee is its publisher, W5)."""
    ring = KeyRing(dataset)
    trusted = {**publisher_keys, **{i.keyid: i.public for i in privates.identities}}
    for identity in privates.identities:
        ring.add(
            [Envelope.from_dict(i.envelope) for i in escrows if i.grantee == identity.keyid],
            publisher_keys=trusted,
            grantee=identity.keyid,
            privates=privates,
            grants={None: None},
            now=now,
        )
    return ring


def escrow_ring(
    client: RegistryClient,
    dataset: str,
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
    identities: Sequence[SigningKey] | None = None,
) -> KeyRing:
    """Every data key of ``dataset`` from the caller's own escrow (ENCRYPTION.md 4.5): the
    escrows of ``identities`` (default: the caller's identity and the former ones kept beside
    it, :func:`own_keys`), opened with their derived keys."""
    privates = own_keys(client) if identities is None else DerivedKeys(identities)
    escrows = _escrows(client, dataset)
    return _open_escrow(escrows, dataset, privates, publisher_keys=publisher_keys, now=now)


def _published(client: RegistryClient) -> list[str]:
    """The datasets in the namespaces the caller owns (its principal's stable key id)."""
    me = client.get_principal(client.keyid).keyid
    owners: dict[str, bool] = {}
    found: list[str] = []
    offset = 0
    while True:
        page = client.list_datasets(limit=1000, offset=offset)
        for item in page.items:
            if item.namespace not in owners:
                owners[item.namespace] = client.get_namespace(item.namespace).owner == me
            if owners[item.namespace]:
                found.append(item.dataset)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return found


def rewrap_escrow(client: RegistryClient, former: Sequence[SigningKey]) -> list[str]:
    """After an identity rotation (ENCRYPTION.md 3.4): wrap the data keys of every escrow the
    ``former`` identities open to the caller's current identity-derived key, signed by its
    current key, so that any machine holding only the new identity can approve requests for
    the old versions. Keys already escrowed to the current identity are left out (a re-run
    adds nothing). Returns the datasets whose escrow it extended."""
    current = ensure_encryption_key(client)
    mine, old = DerivedKeys([client.key]), DerivedKeys(former)
    now = utc_now()
    done: list[str] = []
    for dataset in _published(client):
        escrows = _escrows(client, dataset)
        have = _open_escrow(escrows, dataset, mine, publisher_keys={}, now=now).keys()
        held = _open_escrow(escrows, dataset, old, publisher_keys={}, now=now).keys()
        missing = {
            v: {g: k for g, k in groups.items() if g not in have.get(v, {})}
            for v, groups in held.items()
        }
        missing = {v: groups for v, groups in missing.items() if groups}
        if not missing:
            continue
        env = key_grant_envelope(
            client.key,
            missing,
            dataset=dataset,
            grantee=client.keyid,
            recipient=current.public,
            grant=None,
            created=now,
        )
        post_key_grant(client, env)
        done.append(dataset)
    return done


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


def _post_wrapped(
    client: RegistryClient,
    grant: GrantItem,
    covered: Mapping[int, Mapping[str, DataKey]],
    recipient: EncryptionPublicKey,
    now: datetime,
) -> None:
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
    _post_wrapped(client, grant, covered, recipient, now)
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
    pending = []
    for grant in client.list_grants(dataset=dataset):
        mine = grant.dataset == dataset and grant.grantee != client.keyid
        covered = _covered(grant, keys, now) if mine else {}
        found = _newest_encryption_key(client, grant.grantee, now=now) if covered else None
        if found is not None:
            pending.append((grant, covered, *found))
    # The grantees' encryption keys checked in the log together (16 per round trip).
    check_logged(client, list({env.digest: env for *_, env in pending}.values()), now=now)
    for grant, covered, recipient, _env in pending:
        _post_wrapped(client, grant, covered, recipient, now)


def reader_keys(
    client: RegistryClient,
    manifest: Verified[DatasetManifest],
    grant: Verified[AccessGrant],
    *,
    publisher_keys: Mapping[str, VerifyKey],
    now: datetime,
    listed: Sequence[KeyGrantItem] | None = None,
) -> KeyRing | None:
    """The data keys the caller's key grants carry for ``manifest`` under ``grant`` (``None``
    for a plaintext version); :class:`MissingKeyError` when an encrypted group has none.
    ``listed``: the caller's key grants of the dataset if already fetched (with its grants),
    else they are fetched here. Either way each is verified as it is added to the ring.

    The key grants used are not yet checked against the log: the caller checks
    :func:`logged_key_grants` together with the manifest and grant (one log check, LOG.md 1.7)."""
    m = manifest.statement
    if not m.encryption:
        return None
    ring = KeyRing(m.dataset)
    grantee = grant.statement.grantee
    items = key_grants(client, m.dataset) if listed is None else listed
    ring.add(
        [Envelope.from_dict(i.envelope) for i in items],
        publisher_keys=publisher_keys,
        grantee=grantee,
        privates=own_keys(client),  # every epoch, and the identities rotated away from
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


def logged_key_grants(ring: KeyRing | None, version: int) -> list[Envelope]:
    """The key grants of ``ring`` that carry a key of ``version``: what a reader of that version
    must find in the log (none for a plaintext version)."""
    if ring is None:
        return []
    return [
        e
        for e in ring.envelopes
        if any(k["version"] == version for k in json.loads(e.payload)["keys"])
    ]
