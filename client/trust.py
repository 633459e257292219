"""What this client trusts: pinned publisher keys per namespace, newest manifest per dataset.

``$OSTRACA_HOME/trusted_keys.json``::

    {"namespaces": {"acme": {"keys": {"<keyid>": "<base64 raw key>"}, "source": "tofu"|"config"|
                             "rotation", "pinned": "2026-…Z",
                             "retired": {"<keyid>": {"public": "<base64>", "until": "2026-…Z",
                                                     "successor": "<keyid>"}}}},
     "datasets":   {"acme/books": {"latest": 3, "versions": {"1": "<digest>", "2": …, "3": …}}}}

and ``$OSTRACA_HOME/trusted_manifests/<digest>.json``: the newest verified manifest envelope of
each dataset, byte for byte (re-verified with the pinned keys whenever it is loaded).

Keys. A namespace's keys are pinned either by hand (edit the file, ``source: "config"``, or
:meth:`TrustStore.pin`) or on first use (TOFU: the keys the registry lists the first time, with
a clearly printed notice). From then on only pinned keys verify; if the registry lists a key that
is not pinned, the namespace is refused with :class:`UntrustedKeyError` unless a verified
:class:`KeyRotation` (signed by a pinned key and by the new one) links them — the new key then
replaces the old one in the pin. The rotation chain is fetched from the registry when it lists a
key that is not pinned (``OfferedKeys.fetch_rotations``, set by
:meth:`RegistryClient.namespace_keys`), and every link is verified from the pinned key: the
registry can only relay a rotation, never make one.

Retired keys. A key rotated away from is kept under ``retired`` with the time of its rotation
(``until``: the KeyRotation's ``created``): it verifies manifests created up to then, so old
versions still verify, but a manifest it signed later is refused. It never signs for
:meth:`TrustStore.keys_for` (which returns the active keys only).

Manifests. The newest verified version and the digest of every version seen are remembered, so a
registry that serves an older "latest" is caught (:class:`RollbackError`), one that serves a
different manifest for a known version is caught (:class:`ChainError`), and a registry that is
several versions ahead is followed by verifying every intermediate manifest (each link as
``verify_chain`` does, plus the window of a retired key).

The rules themselves are protocol_spec's (``verify_manifest``, ``walk_rotations``); this module
applies them to what the registry serves and persists what verified.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ostraca.protocol_spec import (
    ChainError,
    DatasetManifest,
    Envelope,
    MalformedError,
    OstracaError,
    RollbackError,
    UntrustedKeyError,
    Verified,
    VerifyKey,
    split_dataset,
    verify_chain,
    verify_manifest,
    walk_rotations,
)
from ostraca.protocol_spec.models import TIMESTAMP_FORMAT, utc_now
from ostraca.protocol_spec.verify import RetiredKeys

from .files import atomic_write
from .trust_links import first_use_retired, retired_entry

TRUST_FILE = "trusted_keys.json"


class OfferedKeys(dict[str, VerifyKey]):
    """Keys a registry lists for a namespace, by key id — a plain mapping, as before — plus what
    following a rotation needs: which keys it lists as rotated (and when), and how to fetch the
    namespace owner's rotation chain (unverified envelopes, oldest first)."""

    def __init__(
        self,
        keys: Mapping[str, VerifyKey] | None = None,
        *,
        rotated: Mapping[str, datetime] | None = None,
        fetch_rotations: Callable[[], Sequence[Envelope]] | None = None,
    ) -> None:
        super().__init__(keys or {})
        self.rotated: dict[str, datetime] = dict(rotated or {})
        self.fetch_rotations = fetch_rotations

    @property
    def active(self) -> dict[str, VerifyKey]:
        return {k: v for k, v in self.items() if k not in self.rotated}


class ManifestSource(Protocol):
    """What manifest resolution needs from the registry (``RegistryClient`` has it)."""

    def get_manifest_envelope(self, dataset: str, version: int | str = "latest") -> Envelope: ...


def _short(keyids: Sequence[str]) -> str:
    return ", ".join(k[:16] + "…" for k in sorted(keyids))


class TrustStore:
    """Pinned keys and remembered manifests under ``home`` (safe for concurrent processes)."""

    def __init__(self, home: Path, *, announce: Callable[[str], None] | None = None) -> None:
        self.home = Path(home)
        self.path = self.home / TRUST_FILE
        self.manifests_dir = self.home / "trusted_manifests"
        self._announce = announce or (lambda _msg: None)

    # the file

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the trust file under an exclusive lock; written back atomically."""
        self.home.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.home / f".{TRUST_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            data = self._read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                text = json.dumps(data, indent=2, sort_keys=True) + "\n"
                atomic_write(self.path, text.encode())
        finally:
            os.close(lock_fd)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise MalformedError(f"cannot read {self.path}: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedError(f"{self.path} must hold a JSON object")
        data.setdefault("namespaces", {})
        data.setdefault("datasets", {})
        return data

    # keys

    def pinned(self, namespace: str) -> dict[str, VerifyKey] | None:
        """The pinned keys of ``namespace`` (``None`` if nothing is pinned yet)."""
        entry = self._read()["namespaces"].get(namespace)
        return None if entry is None else _keys_of(entry, self.path, namespace)

    def retired(self, namespace: str) -> dict[str, tuple[VerifyKey, datetime]]:
        """Keys of ``namespace`` rotated away from, each with the time of its rotation: they
        verify statements created up to then, and nothing newer."""
        entry = self._read()["namespaces"].get(namespace)
        return {} if entry is None else _retired_of(entry, self.path, namespace)

    def successors(self, namespace: str, keyid: str) -> dict[str, VerifyKey]:
        """The keys ``keyid`` of ``namespace`` was rotated to, link by link up to a pinned key
        (only verified rotations are ever recorded here): they may grant what it signed."""
        entry = self._read()["namespaces"].get(namespace) or {}
        links = entry.get("retired") or {}
        retired = _retired_of(entry, self.path, namespace) if entry else {}
        pinned = _keys_of(entry, self.path, namespace) if entry else {}
        out: dict[str, VerifyKey] = {}
        current = keyid
        while isinstance(links.get(current), dict):
            nxt = links[current].get("successor")
            key = pinned.get(nxt) or (retired[nxt][0] if nxt in retired else None)
            if key is None or nxt in out or nxt == keyid:  # the end, or a loop
                break
            out[nxt] = key
            current = nxt
        return out

    def pin(self, namespace: str, keys: Mapping[str, VerifyKey], *, source: str = "config") -> None:
        """Pin exactly ``keys`` for ``namespace`` (replacing any earlier pin)."""
        if not keys:
            raise MalformedError("refusing to pin an empty key set")
        with self._locked() as data:
            data["namespaces"][namespace] = _entry(keys, source)

    def keys_for(
        self,
        namespace: str,
        *,
        offered: Mapping[str, VerifyKey],
        now: datetime,
        rotations: Sequence[Envelope] = (),
    ) -> dict[str, VerifyKey]:
        """The keys to verify ``namespace``'s new statements with, given what the registry lists.

        First use pins ``offered``'s active keys (TOFU, announced; keys it lists as rotated are
        kept as retired, each with the successor its relayed rotation verifiably names:
        :func:`~.trust_links.first_use_retired`). Afterwards an active key in ``offered`` that
        is not pinned must be reached from the pin by verified rotations — ``rotations``, and
        the chain ``offered.fetch_rotations`` fetches when ``offered`` is :class:`OfferedKeys`
        — else :class:`UntrustedKeyError`. Keys rotated away from move to the retired keys
        (:meth:`retired`). Keys the registry stopped listing stay pinned (the registry cannot
        revoke a publisher's authority, only the publisher can, by rotation).
        """
        for keyid, key in offered.items():
            if key.keyid != keyid:
                raise UntrustedKeyError(f"the registry lists key {keyid[:16]}… under another id")
        listed_rotated = offered.rotated if isinstance(offered, OfferedKeys) else {}
        active = {k: v for k, v in offered.items() if k not in listed_rotated}
        with self._locked() as data:
            entry = data["namespaces"].get(namespace)
            if entry is None:
                if not active:
                    raise UntrustedKeyError(f"the registry lists no keys for namespace {namespace}")
                fetch = offered.fetch_rotations if isinstance(offered, OfferedKeys) else None
                retired = first_use_retired(
                    offered, list(listed_rotated), fetch=fetch, now=now, namespace=namespace
                )
                data["namespaces"][namespace] = _entry(active, "tofu", retired)
                also = f", and rotated key(s) {_short(list(retired))} (verified)" if retired else ""
                self._announce(
                    f"trusting on first use: publisher key(s) {_short(list(active))}{also} for "
                    f"namespace '{namespace}' (pinned in {self.path}; compare the key id with "
                    "the publisher's out of band)"
                )
                return dict(active)
            pinned = _keys_of(entry, self.path, namespace)
            retired = dict(entry.get("retired") or {})
            unknown = set(active) - set(pinned)
            if not unknown:
                return pinned
            chain = list(rotations)
            fetch = offered.fetch_rotations if isinstance(offered, OfferedKeys) else None
            if fetch is not None:
                # The registry only relays the chain: every link is verified below.
                with contextlib.suppress(OstracaError):
                    chain += list(fetch())
            walk = walk_rotations(pinned, chain, now=now, retired=retired)
            current = walk.active
            for old_id, rotated in walk.rotated.items():
                retired[old_id] = retired_entry(rotated.key, rotated.until, rotated.successor)
            still = set(active) - set(current)
            if still:
                raise UntrustedKeyError(
                    f"the registry lists key(s) {_short(list(still))} for namespace "
                    f"'{namespace}', but {_short(list(pinned))} is pinned and no key rotation "
                    "signed by the pinned key links them",
                    hint=(
                        "this may be an attack; if the publisher really changed keys, get its "
                        "KeyRotation statement, or remove the namespace from "
                        f"{self.path} after checking the new key id with the publisher"
                    ),
                )
            data["namespaces"][namespace] = _entry(current, "rotation", retired)
            self._announce(
                f"namespace '{namespace}': key rotation verified, now trusting "
                f"{_short(list(current))} (the rotated key verifies only what it signed before)"
            )
            return current

    # manifests

    def known_digest(self, dataset: str, version: int) -> str | None:
        entry = self._read()["datasets"].get(dataset) or {}
        digest = (entry.get("versions") or {}).get(str(version))
        return digest if isinstance(digest, str) else None

    def trusted_manifest(
        self, dataset: str, *, keys: Mapping[str, VerifyKey], now: datetime
    ) -> Verified[DatasetManifest] | None:
        """The newest manifest of ``dataset`` verified before, re-verified now (or ``None``)."""
        entry = self._read()["datasets"].get(dataset)
        if not entry or "latest" not in entry:
            return None
        digest = entry["versions"][str(entry["latest"])]
        try:
            raw = (self.manifests_dir / f"{digest}.json").read_bytes()
        except FileNotFoundError as exc:
            raise ChainError(
                f"the trusted manifest of {dataset} version {entry['latest']} is missing",
                hint=f"restore {self.manifests_dir} or remove {dataset} from {self.path}",
            ) from exc
        verified = verify_manifest(
            Envelope.from_json(raw),
            publisher_keys=keys,
            retired=self.retired(split_dataset(dataset)[0]),
            now=now,
            dataset=dataset,
        )
        if verified.digest != digest:
            raise ChainError(f"{self.manifests_dir / digest}.json does not hold that manifest")
        return verified

    def remember(self, verified: Sequence[tuple[Verified[DatasetManifest], Envelope]]) -> None:
        """Record verified manifests (digest per version; the newest one's envelope)."""
        if not verified:
            return
        self.manifests_dir.mkdir(parents=True, exist_ok=True)
        with self._locked() as data:
            for v, env in verified:
                m = v.statement
                entry = data["datasets"].setdefault(m.dataset, {"versions": {}})
                known = entry["versions"].get(str(m.version))
                if known is not None and known != v.digest:
                    raise ChainError(
                        f"two different manifests claim {m.dataset} version {m.version}"
                    )
                entry["versions"][str(m.version)] = v.digest
                if m.version > int(entry.get("latest", 0)):
                    atomic_write(self.manifests_dir / f"{v.digest}.json", env.to_json())
                    entry["latest"] = m.version


def _entry(
    keys: Mapping[str, VerifyKey], source: str, retired: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "keys": {k.keyid: k.b64 for k in keys.values()},
        "source": source,
        "pinned": utc_now().strftime(TIMESTAMP_FORMAT),
    }
    if retired:
        entry["retired"] = dict(retired)
    return entry


def _retired_of(entry: Any, path: Path, namespace: str) -> dict[str, tuple[VerifyKey, datetime]]:
    raw = entry.get("retired") if isinstance(entry, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MalformedError(f"{path}: 'retired' of namespace '{namespace}' must be an object")
    out = {}
    for keyid, item in raw.items():
        try:
            key = VerifyKey.from_b64(str(item["public"]))
            until = datetime.strptime(str(item["until"]), TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except (TypeError, KeyError, ValueError) as exc:
            raise MalformedError(
                f"{path}: retired key {keyid[:16]}… of '{namespace}': {exc}"
            ) from exc
        if key.keyid != keyid:
            raise MalformedError(
                f"{path}: retired key {keyid[:16]}… of '{namespace}' has another id"
            )
        out[keyid] = (key, until)
    return out


def _keys_of(entry: Any, path: Path, namespace: str) -> dict[str, VerifyKey]:
    raw = entry.get("keys") if isinstance(entry, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise MalformedError(f"{path}: namespace '{namespace}' has no keys")
    keys = {}
    for keyid, b64 in raw.items():
        key = VerifyKey.from_b64(str(b64))
        if key.keyid != keyid:
            raise MalformedError(f"{path}: key {keyid[:16]}… of '{namespace}' has another id")
        keys[keyid] = key
    return keys


def _peek_version(envelope: Envelope) -> int:
    """The version a (not yet verified) manifest claims; only used to pick what to verify."""
    try:
        version = json.loads(envelope.payload).get("version")
    except (ValueError, AttributeError) as exc:
        raise MalformedError("manifest payload is not a JSON object") from exc
    if not isinstance(version, int) or version < 1:
        raise MalformedError("manifest has no valid version")
    return version


def resolve_manifest(
    source: ManifestSource,
    store: TrustStore,
    dataset: str,
    *,
    keys: Mapping[str, VerifyKey],
    now: datetime,
    version: int | None = None,
) -> tuple[Verified[DatasetManifest], Envelope]:
    """Fetch and verify ``dataset``'s manifest (``version`` or the latest) against what we trust.

    1. Signature by a pinned key, the right dataset, not from the future (``verify_manifest``);
       a retired key of the namespace verifies only manifests created before its rotation.
    2. Against the newest trusted version: older "latest" → :class:`RollbackError`; newer →
       every intermediate version is fetched and the chain verified (``verify_chain``); an
       explicitly requested older version must link forward to the trusted one (or match the
       digest remembered for it).
    3. Remember what verified.
    """
    namespace, _ = split_dataset(dataset)
    retired = store.retired(namespace)

    verifier = _Verifier(keys=keys, retired=retired, now=now, dataset=dataset)
    trusted = store.trusted_manifest(dataset, keys=keys, now=now)
    env = source.get_manifest_envelope(dataset, "latest" if version is None else version)
    claimed = _peek_version(env)
    if version is not None and claimed != version:
        raise ChainError(f"asked for {dataset} version {version}, the registry sent {claimed}")
    if trusted is None or claimed == trusted.statement.version:
        v = verifier.check(env, trusted)
        seen = [(v, env)]
    elif claimed > trusted.statement.version:
        between = [
            source.get_manifest_envelope(dataset, k)
            for k in range(trusted.statement.version + 1, claimed)
        ]
        seen = verifier.walk(trusted, [*between, env])
        v = seen[-1][0]
    elif version is None:
        verifier.check(env)
        raise RollbackError(
            f"the registry's latest {dataset} is version {claimed}, older than version "
            f"{trusted.statement.version} which this client has already verified",
            hint="the registry (or something between it and you) is serving stale or "
            "rolled-back data; try again later or report it to the registry operator",
        )
    else:
        v = verifier.check(env)
        seen = _older_version(source, store, verifier, v, env, trusted)
    store.remember(seen)
    return v, env


_Seen = list[tuple[Verified[DatasetManifest], Envelope]]


@dataclass(frozen=True)
class _Verifier:
    """One dataset's manifests checked against the namespace's keys (SPEC.md 5.1)."""

    keys: Mapping[str, VerifyKey]
    retired: RetiredKeys
    now: datetime
    dataset: str

    def check(
        self, envelope: Envelope, previous: Verified[DatasetManifest] | None = None
    ) -> Verified[DatasetManifest]:
        return verify_manifest(
            envelope,
            publisher_keys=self.keys,
            retired=self.retired,
            now=self.now,
            dataset=self.dataset,
            previous=previous,
        )

    def walk(self, start: Verified[DatasetManifest] | None, envelopes: list[Envelope]) -> _Seen:
        """Every link from ``start`` (the trust store remembers each version's digest)."""
        links = verify_chain(
            envelopes,
            publisher_keys=self.keys,
            retired=self.retired,
            now=self.now,
            dataset=self.dataset,
            trusted=start,
        )
        return list(zip(links, envelopes, strict=True))


def _older_version(
    source: ManifestSource,
    store: TrustStore,
    verifier: _Verifier,
    v: Verified[DatasetManifest],
    env: Envelope,
    trusted: Verified[DatasetManifest],
) -> _Seen:
    """An explicitly requested version older than the trusted one: it must match the digest
    remembered for it, or its chain must lead forward to the trusted version."""
    dataset, claimed = v.statement.dataset, v.statement.version
    known = store.known_digest(dataset, claimed)
    if known is None:
        later = [
            source.get_manifest_envelope(dataset, k)
            for k in range(claimed + 1, trusted.statement.version + 1)
        ]
        seen = verifier.walk(v, later)
        if (seen[-1][0] if seen else v).digest != trusted.digest:
            raise ChainError(
                f"{dataset} version {claimed} does not lead to the trusted version "
                f"{trusted.statement.version}"
            )
        return [*seen, (v, env)]
    if known != v.digest:
        raise ChainError(
            f"the registry serves another manifest for {dataset} version {claimed} than "
            "the one this client verified before"
        )
    return [(v, env)]
