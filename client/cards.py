"""Dataset cards and deprecations on the client side (SPEC 3.7, 3.8, 5.8, 5.9).

Everything the registry serves here is verified before it is used: a card must be signed by a
key of the dataset's namespace, as pinned in the :class:`~.trust.TrustStore` (or reached from a
pinned key by verified rotations), and must not be older than the newest card this client has
verified for the dataset (remembered in ``$OSTRACA_HOME/cards.json``), so a registry cannot
replay an old README. Deprecations are verified the same way and bound to the manifest of the
version they name; :func:`resolve_current` is what ``DATASET`` without ``@N`` means: the newest
version no deprecation names, after verifying the manifest chain up to the newest version.

A registry may withhold a card or a deprecation (it is trusted for availability); it cannot
forge one, and every one it accepted is in its transparency log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import (
    DatasetManifest,
    Envelope,
    RollbackError,
    VerifyKey,
    sign_statement,
    split_dataset,
    utc_now,
)
from ostraca.protocol_spec.cards import (
    CardHead,
    DatasetCard,
    Deprecation,
    verify_card,
    verify_deprecation,
)
from ostraca.protocol_spec.errors import MalformedError, ScopeError
from ostraca.protocol_spec.verify import ChainHead, RetiredKeys, Verified
from ostraca.protocol_spec.wire import CardOut, DeprecationItem, DeprecationList

from .api import RegistryClient
from .files import atomic_write
from .trust import TrustStore, resolve_manifest
from .wire import dataset_path, parse

__all__ = [
    "CardMemory",
    "Current",
    "NamespaceTrust",
    "card_json",
    "deprecate_version",
    "fetch_card",
    "fetch_deprecations",
    "publish_card",
    "readme_summary",
    "resolve_current",
]


@dataclass(frozen=True)
class NamespaceTrust:
    """The keys a dataset's cards and deprecations are verified with, from the trust store."""

    keys: dict[str, VerifyKey]
    retired: RetiredKeys
    store: TrustStore
    now: datetime

    @classmethod
    def of(
        cls,
        client: RegistryClient,
        dataset: str,
        *,
        now: datetime | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> NamespaceTrust:
        now = now or utc_now()
        ns, _ = split_dataset(dataset)
        store = TrustStore(client.config.home, announce=announce)
        keys = store.keys_for(ns, offered=client.namespace_keys(ns), now=now)
        return cls(keys=dict(keys), retired=store.retired(ns), store=store, now=now)


class CardMemory:
    """The newest card verified per dataset (``cards.json`` under the client's home): a card
    older than it is a replay (``RollbackError``)."""

    def __init__(self, home: Path) -> None:
        self.path = home / "cards.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise MalformedError(f"{self.path} is not JSON", hint="remove it") from exc
        if not isinstance(data, dict):
            raise MalformedError(f"{self.path} is not a JSON object", hint="remove it")
        return data

    def head(self, dataset: str) -> CardHead | None:
        entry = self._read().get(dataset)
        if not isinstance(entry, dict):
            return None
        return CardHead(sequence=int(entry["sequence"]), digest=str(entry["digest"]))

    def remember(self, dataset: str, head: CardHead) -> None:
        data = self._read()
        known = data.get(dataset)
        if isinstance(known, dict) and int(known["sequence"]) >= head.sequence:
            return
        data[dataset] = {"sequence": head.sequence, "digest": head.digest}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode())


def fetch_card(
    client: RegistryClient, dataset: str, trust: NamespaceTrust
) -> Verified[DatasetCard] | None:
    """The dataset's current card, verified (``None`` when it has none)."""
    response = client.transport.send(
        "GET", f"{dataset_path(dataset)}/card", dataset=dataset, accept={404}
    )
    if response.status_code == 404:
        return None
    item = parse(response, CardOut)
    memory = CardMemory(client.config.home)
    verified = verify_card(
        Envelope.from_dict(item.envelope),
        publisher_keys=trust.keys,
        retired=trust.retired,
        now=trust.now,
        dataset=dataset,
        previous=memory.head(dataset),
    )
    memory.remember(dataset, CardHead.of(verified))
    return verified


def card_json(verified: Verified[DatasetCard]) -> dict[str, Any]:
    """A verified card as the CLI's ``--json`` prints it."""
    c = verified.statement
    return {
        "dataset": c.dataset,
        "sequence": c.sequence,
        "card_id": verified.digest,
        "signed_by": verified.signer.keyid,
        "description": c.description,
        "readme": c.readme,
        "created": c.created.isoformat(),
    }


def readme_summary(readme: str, *, limit: int = 200) -> str:
    """The README's first paragraph that is not a heading, on one line, cut at ``limit``."""
    paragraphs = [" ".join(p.split()) for p in readme.split("\n\n")]
    text = next((p for p in paragraphs if p and not p.startswith("#")), "")
    text = text or next((p.lstrip("# ") for p in paragraphs if p), "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _deprecation_list(client: RegistryClient, dataset: str) -> DeprecationList | None:
    """The registry's deprecations of ``dataset``; ``None`` from a registry older than them
    (404: it has no such route; every version is then current, as it was)."""
    response = client.transport.send(
        "GET", f"{dataset_path(dataset)}/deprecations", dataset=dataset, accept={404}
    )
    return None if response.status_code == 404 else parse(response, DeprecationList)


def fetch_deprecations(
    client: RegistryClient,
    dataset: str,
    trust: NamespaceTrust,
    *,
    listing: DeprecationList | None = None,
) -> dict[int, Verified[Deprecation]]:
    """The dataset's deprecations (``listing``, or fetched now), each verified, by version; one
    naming a manifest other than the version's trusted one (when this client verified that
    version) is refused."""
    out: dict[int, Verified[Deprecation]] = {}
    listing = listing or _deprecation_list(client, dataset)
    for item in [] if listing is None else listing.items:
        known = trust.store.known_digest(dataset, item.version)
        verified = verify_deprecation(
            Envelope.from_dict(item.envelope),
            publisher_keys=trust.keys,
            retired=trust.retired,
            now=trust.now,
            dataset=dataset,
            manifest=None if known is None else ChainHead(dataset, item.version, known),
        )
        out[verified.statement.version] = verified
    return out


@dataclass(frozen=True)
class Current:
    """A resolved version: its verified manifest and envelope, and its deprecation if any."""

    manifest: Verified[DatasetManifest]
    envelope: Envelope
    deprecation: Verified[Deprecation] | None

    @property
    def deprecation_reason(self) -> str | None:
        return None if self.deprecation is None else self.deprecation.statement.reason


def _verified_head(
    client: RegistryClient, dataset: str, trust: NamespaceTrust, newest: int
) -> tuple[Verified[DatasetManifest], Envelope]:
    """Version ``newest`` (the registry's newest, deprecated or not), with the chain up to it
    verified; a registry that claims fewer versions than this client verified is a rollback."""
    store, keys, now = trust.store, trust.keys, trust.now
    trusted = store.trusted_manifest(dataset, keys=keys, now=now)
    if trusted is not None and newest < trusted.statement.version:
        raise RollbackError(
            f"the registry's newest {dataset} is version {newest}, older than version "
            f"{trusted.statement.version} which this client has already verified",
            hint="the registry (or something between it and you) is serving stale or "
            "rolled-back data; try again later or report it to the registry operator",
        )
    return resolve_manifest(client, store, dataset, keys=keys, now=now, version=newest)


def resolve_current(
    client: RegistryClient,
    dataset: str,
    *,
    version: int | None = None,
    trust: NamespaceTrust | None = None,
    warn: Callable[[str], None] = lambda _text: None,
) -> Current:
    """Verify ``dataset`` at ``version``, or at the newest version not deprecated.

    Without ``version`` the manifest chain is verified up to the newest version first, then
    the newest version no verified deprecation names is chosen (the newest when every version
    is deprecated). An explicit deprecated ``version`` is still served; ``warn`` hears of it,
    and of deprecated versions skipped.
    """
    trust = trust or NamespaceTrust.of(client, dataset)
    listing = _deprecation_list(client, dataset)
    head = None
    if version is None and listing is not None:
        head = _verified_head(client, dataset, trust, listing.latest_version)
    deprecated = (
        {} if listing is None else fetch_deprecations(client, dataset, trust, listing=listing)
    )
    if head is not None:  # the newest version not deprecated (the newest if all are)
        newest = head[0].statement.version
        live = next((v for v in range(newest, 0, -1) if v not in deprecated), newest)
        if live != newest:
            warn(f"{dataset} version {newest} is deprecated; using version {live}")
            version = live
    if head is not None and version is None:
        verified, env = head
    else:
        verified, env = resolve_manifest(
            client, trust.store, dataset, keys=trust.keys, now=trust.now, version=version
        )
    dep = deprecated.get(verified.statement.version)
    if dep is not None:
        if dep.statement.manifest != verified.digest:
            raise ScopeError(
                f"the deprecation of {dataset} version {verified.statement.version} names "
                "another manifest"
            )
        warn(
            f"{dataset} version {verified.statement.version} is deprecated: {dep.statement.reason}"
        )
    return Current(manifest=verified, envelope=env, deprecation=dep)


def _post(client: RegistryClient, path: str, envelope: Envelope) -> Any:
    headers = {**client.auth_headers(), "Content-Type": "application/json"}
    return client.transport.send("POST", path, content=envelope.to_json(), headers=headers)


def publish_card(
    client: RegistryClient,
    dataset: str,
    *,
    description: str | None = None,
    readme: str | None = None,
    trust: NamespaceTrust | None = None,
) -> CardOut:
    """Sign the dataset's next card and submit it. What is not given is kept from the current
    card (the first card's description defaults to the registry's, from the latest manifest)."""
    trust = trust or NamespaceTrust.of(client, dataset)
    current = fetch_card(client, dataset, trust)
    was = None if current is None else current.statement
    if description is None:
        description = client.get_dataset(dataset).description if was is None else was.description
    statement = DatasetCard(
        dataset=dataset,
        publisher=client.keyid,
        sequence=1 if current is None else current.statement.sequence + 1,
        previous=None if current is None else current.digest,
        description=description,
        readme=readme if readme is not None else ("" if was is None else was.readme),
        created=utc_now(),
    )
    response = _post(
        client, f"{dataset_path(dataset)}/card", sign_statement(statement, [client.key])
    )
    item = parse(response, CardOut)
    CardMemory(client.config.home).remember(dataset, CardHead(item.sequence, item.card_id))
    return item


def deprecate_version(
    client: RegistryClient,
    dataset: str,
    version: int,
    *,
    reason: str,
    trust: NamespaceTrust | None = None,
) -> DeprecationItem:
    """Sign a :class:`Deprecation` of ``version`` (bound to its verified manifest) and submit it."""
    trust = trust or NamespaceTrust.of(client, dataset)
    verified, _ = resolve_manifest(
        client, trust.store, dataset, keys=trust.keys, now=trust.now, version=version
    )
    statement = Deprecation(
        dataset=dataset,
        version=version,
        manifest=verified.digest,
        publisher=client.keyid,
        reason=reason,
        created=utc_now(),
    )
    response = _post(
        client, f"{dataset_path(dataset)}/deprecations", sign_statement(statement, [client.key])
    )
    return parse(response, DeprecationItem)
