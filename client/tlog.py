"""The client's side of the transparency log (protocol_spec/LOG.md section 7, rules L1–L13).

:func:`check_statements` is the one entry point: given the envelopes a client is about to rely
on (a manifest, a grant, ...) it fetches the registry's latest checkpoint and checks it against
the log key pinned for that registry (first use pins it), against the maximum age (a frozen
view is refused), against the witnesses the client requires (k of n) and, through a consistency
proof, against the checkpoint it accepted last (two inconsistent checkpoints are an
equivocation, shown as evidence). Then every envelope must be in the tree, by an inclusion proof
over its bytes, and every grant's revocation status is read from **all** the entries after the
grant's own, checked complete with a range proof: a registry that hides a revocation must fork
its log to do so.

The store (``$OSTRACA_HOME/logs/<registry>.json``, mode 0600) keeps the pinned log vkey and the
last accepted signed checkpoint; it is written only once every check passed. The policy
(``$OSTRACA_HOME/log.json``: ``max_age_hours``, ``witnesses`` as vkeys, ``quorum``) is
:class:`LogPolicy`.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ostraca.protocol_spec import (
    AccessGrant,
    Envelope,
    MalformedError,
    OstracaError,
    RevokedError,
)
from ostraca.protocol_spec.checkpoint import (
    SignedCheckpoint,
    open_checkpoint,
    require_fresh,
    verify_checkpoint_update,
    verify_entry_inclusion,
)
from ostraca.protocol_spec.enckeys import KeyGrant, key_grant_log_entry
from ostraca.protocol_spec.envelope import MAX_ENVELOPE_BYTES
from ostraca.protocol_spec.errors import EquivocationError, InclusionProofError
from ostraca.protocol_spec.merkle import (
    ConsistencyProof,
    InclusionProof,
    hash_from_b64,
    leaf_hash,
    verify_range,
)
from ostraca.protocol_spec.models import Revocation
from ostraca.protocol_spec.note import MAX_NOTE_SIZE, NoteVerifier

from .tlog_store import CheckpointStore, LogPolicy, StoredLog, log_vkey_of
from .wire import Wire

if TYPE_CHECKING:  # the client (and its key flow) call this module
    from .api import RegistryClient

__all__ = [
    "STATEMENTS_PER_CHECK",
    "CheckpointStore",
    "LogCheck",
    "LogPolicy",
    "LogReader",
    "StoredLog",
    "check_statements",
    "entries",
    "log_vkey_of",
    "parse_bundle",
]

STATEMENTS_PER_CHECK = 16
"""Statements (and grant scans) one ``GET /v1/log/proofs`` may ask about (the registry's cap)."""
PAGE = 10_000
"""Entries per page the registry serves (``GET /v1/log/entries``)."""
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
"""Bytes per page past its first entry (the registry's cap)."""
_REVOCATION_MARK = Revocation.PAYLOAD_TYPE.encode()
_PROOFS_KEYS = {"tree_size", "consistency", "statements", "scans"}


@dataclass(frozen=True, slots=True)
class LogCheck:
    """What :func:`check_statements` established: the checkpoint now kept, and the log index
    of each envelope checked (by statement id)."""

    checkpoint: SignedCheckpoint
    indexes: dict[str, int]


class LogReader:
    """One registry's log, read over ``wire`` (the caller's HTTP session with the registry):
    :meth:`checkpoint` (L1–L10), :meth:`included` (L11), :meth:`require_unrevoked` (L12),
    :meth:`entries`, and :meth:`accept` (L13), which alone writes the store."""

    def __init__(self, wire: Wire, home: Path, policy: LogPolicy | None = None) -> None:
        self.policy = policy or LogPolicy.load(home)
        self.store = CheckpointStore(home, wire.base_url)
        self.wire = wire
        self._log: NoteVerifier | None = None
        self._trusted: SignedCheckpoint | None = None
        self._kept: SignedCheckpoint | None = None
        self._scanned: dict[str, int] = {}

    def _open(self, now: datetime) -> SignedCheckpoint:
        """L1–L7 for the registry's latest checkpoint; loads the store."""
        stored = self.store.load()
        self._log = stored.log if stored else log_vkey_of(_text(self.wire, "/v1/log/key"))
        presented = open_checkpoint(
            _note(self.wire),
            log=self._log,
            now=now,
            witnesses=self.policy.witnesses,
            witness_quorum=self.policy.quorum,
        )  # L1-L6
        require_fresh(presented, now=now, max_age=self.policy.max_age)  # L7
        self._trusted = None
        if stored is not None:
            self._trusted = open_checkpoint(stored.note, log=self._log, now=now)
        self._scanned = dict(stored.scanned) if stored else {}
        return presented

    def _old_size(self, presented: SignedCheckpoint) -> int | None:
        """The size a consistency proof starts from, if one is needed (L10)."""
        old = self._trusted.checkpoint.size if self._trusted else 0
        return old if 0 < old < presented.checkpoint.size else None

    def checkpoint(self, now: datetime) -> SignedCheckpoint:
        """The registry's latest checkpoint, after L1–L10 against the store (not yet saved)."""
        presented = self._open(now)
        old = self._old_size(presented)
        proof = None
        if old is not None:
            new = presented.checkpoint.size
            proof = _json(self.wire, "/v1/log/proof/consistency", old_size=old, new_size=new)
        self._kept = _update(self.wire, self._trusted, presented, proof)  # L8-L10
        return presented

    def check(self, envelopes: Sequence[Envelope], now: datetime) -> dict[str, int]:
        """L1–L12 for ``envelopes`` in two round trips: the checkpoint, then one
        ``GET /v1/log/proofs`` for the consistency, inclusion and range proofs. Returns each
        envelope's log index (by statement id); :meth:`accept` then keeps the checkpoint."""
        presented = self._open(now)
        size, old = presented.checkpoint.size, self._old_size(presented)
        grants = [e.digest for e in envelopes if e.payload_type == AccessGrant.PAYLOAD_TYPE]
        since = {g: self._since(g) for g in grants}
        scans = [g if since[g] is None else f"{g}:{since[g]}" for g in grants]
        params: dict[str, str | int] = {"tree_size": size, "scans": ",".join(scans)}
        params["statements"] = ",".join(e.digest for e in envelopes)
        if old is not None:
            params["old_size"] = old
        try:
            answer = _json(self.wire, "/v1/log/proofs", **params)
        except OstracaError:  # a fork may lack these statements: equivocation comes first
            if old is not None:
                consistency = _json(
                    self.wire, "/v1/log/proof/consistency", old_size=old, new_size=size
                )
                _update(self.wire, self._trusted, presented, consistency)
            raise
        if not isinstance(answer, dict) or set(answer) != _PROOFS_KEYS:
            raise MalformedError(f"a log proofs answer is {sorted(_PROOFS_KEYS)}")
        if not _listed(answer["statements"], envelopes) or not _listed(answer["scans"], grants):
            raise MalformedError("the log proofs answer does not answer what was asked")
        self._kept = _update(self.wire, self._trusted, presented, answer["consistency"])
        indexes = {
            env.digest: _check_entry(item, env, presented)  # L11
            for env, item in zip(envelopes, answer["statements"], strict=True)
        }
        for grant, item in zip(grants, answer["scans"], strict=True):
            done = since[grant]
            start = indexes[grant] + 1 if done is None else done
            first = _first_page(item, size - start)
            rest = entries(self.wire, start + len(first), size)
            prefix = None if done is None else self._trusted
            _scan(item, grant, start, presented, prefix, itertools.chain(first, rest))  # L12
            self._scanned[grant] = size
        return indexes

    def _since(self, grant_id: str) -> int | None:
        """Where an earlier check stopped reading the entries after ``grant_id`` (if it stopped
        at the accepted checkpoint's size, so the range proof can be tied to it)."""
        since = self._scanned.get(grant_id)
        trusted = self._trusted
        return since if trusted is not None and since == trusted.checkpoint.size else None

    def accept(self) -> SignedCheckpoint:
        """L13: keep the checkpoint :meth:`checkpoint` established (and pin the log key)."""
        if self._log is None or self._kept is None:
            raise MalformedError("no checkpoint was checked")
        self.store.save(StoredLog(log=self._log, note=self._kept.note, scanned=self._scanned))
        return self._kept

    def included(self, envelope: Envelope, signed: SignedCheckpoint) -> int:
        return _included(self.wire, envelope, signed)

    def require_unrevoked(self, grant_id: str, start: int, signed: SignedCheckpoint) -> None:
        """L12 for the grant at ``start - 1``. Entries up to the accepted checkpoint's size that
        an earlier check read are not read again: the range proof is then also checked to tile
        that checkpoint's tree, so they are the entries read before (consistency, L10)."""
        since = self._since(grant_id)
        if since is not None and start <= since:
            _require_unrevoked(self.wire, grant_id, since, signed, prefix=self._trusted)
        else:
            _require_unrevoked(self.wire, grant_id, start, signed)
        self._scanned[grant_id] = signed.checkpoint.size

    def entries(self, start: int, end: int) -> Iterator[bytes]:
        return entries(self.wire, start, end)


def check_statements(
    client: RegistryClient,
    envelopes: Sequence[Envelope],
    *,
    now: datetime,
    policy: LogPolicy | None = None,
) -> LogCheck:
    """Rules L1–L13 for ``envelopes`` at ``client``'s registry (see the module docstring).
    Raises the typed error of the first rule that fails; then nothing is stored or pinned."""
    # The client's own session: a second httpx client would cost more than the whole check.
    reader = LogReader(client.transport, client.config.home, policy)
    indexes = reader.check(envelopes, now)
    return LogCheck(checkpoint=reader.accept(), indexes=indexes)


def _text(wire: Wire, path: str) -> str:
    response = wire.send("GET", path)
    if len(response.content) > MAX_NOTE_SIZE:
        raise MalformedError(f"the registry's answer to GET {path} is too large")
    return response.content.decode("utf-8", "replace")


def _note(wire: Wire) -> bytes:
    response = wire.send("GET", "/v1/log/checkpoint")
    return response.content[: MAX_NOTE_SIZE + 1]


def _json(wire: Wire, path: str, **params: str | int) -> Any:
    response = wire.send("GET", path, params=params)
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise MalformedError(f"the registry's answer to GET {path} is not JSON") from exc


def _update(
    wire: Wire, trusted: SignedCheckpoint | None, presented: SignedCheckpoint, answer: Any
) -> SignedCheckpoint:
    """L8–L10 with the registry's consistency proof ``answer`` (JSON; None when none is due)."""
    proof: tuple[bytes, ...] = ()
    if trusted is not None and 0 < trusted.checkpoint.size < presented.checkpoint.size:
        old, new = trusted.checkpoint.size, presented.checkpoint.size
        given = ConsistencyProof.from_dict(answer)
        if (given.old_size, given.new_size) != (old, new):
            raise MalformedError(f"asked for a proof from size {old} to {new}, got another")
        proof = given.hashes
    try:
        return verify_checkpoint_update(trusted=trusted, presented=presented, proof=proof)
    except EquivocationError as exc:
        raise EquivocationError(
            f"{exc.message} (registry {wire.base_url})",
            trusted=exc.trusted,
            presented=exc.presented,
            proof=exc.proof,
            hint="the registry showed two different histories; keep this evidence:\n"
            + exc.evidence(),
        ) from exc


def _included(wire: Wire, envelope: Envelope, signed: SignedCheckpoint) -> int:
    size = signed.checkpoint.size
    answer = _json(wire, f"/v1/log/statements/{envelope.digest}", tree_size=size)
    return _check_entry(answer, envelope, signed)


def _check_entry(answer: Any, envelope: Envelope, signed: SignedCheckpoint) -> int:
    """L11: the log entry shown for ``envelope`` is its bytes and in the checkpoint's tree."""
    if not isinstance(answer, dict) or set(answer) != {"index", "entry", "proof"}:
        raise MalformedError("a log statement answer is {index, entry, proof}")
    proof = InclusionProof.from_dict(answer["proof"])
    entry = _b64(answer["entry"])
    if proof.index != answer["index"] or not _shows(entry, envelope):
        raise InclusionProofError(f"the log entry shown for {envelope.digest} is another one")
    verify_entry_inclusion(entry, proof=proof, checkpoint=signed.checkpoint)
    return proof.index


def _shows(entry: bytes, envelope: Envelope) -> bool:
    """Whether ``entry`` is the log's entry of ``envelope``: the envelope itself (LOG.md 1.2),
    or for a key grant its commitment record (1.7)."""
    if envelope.payload_type == KeyGrant.PAYLOAD_TYPE:
        return entry == key_grant_log_entry(envelope)
    return Envelope.from_json(entry) == envelope


def _first_page(scan: Any, wanted: int) -> list[bytes]:
    """The entries a scan of the proofs answer carries (removed from it: the rest is the range
    proof), at least one unless none is wanted."""
    if not isinstance(scan, dict):
        raise MalformedError("a scan of the log proofs answer is an object")
    page = _b64(scan.pop("entries", None))
    if not wanted:
        if page:
            raise InclusionProofError("the registry sent entries past the tree's end")
        return []
    try:
        return parse_bundle(page, wanted=wanted)
    except MalformedError as exc:
        raise InclusionProofError(f"the registry's entries after a grant: {exc}") from exc


def _listed(items: Any, asked: Sequence[object]) -> bool:
    return isinstance(items, list) and len(items) == len(asked)


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise MalformedError("a log entry is a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"a log entry is not base64: {exc}") from exc


def parse_bundle(body: bytes, *, wanted: int) -> list[bytes]:
    """The entries of an entry bundle (4-byte big-endian length, then the entry, repeated):
    1 to ``wanted`` of them. A truncated bundle, or one larger than a page may be, is refused."""
    if len(body) > MAX_BUNDLE_BYTES + MAX_ENVELOPE_BYTES:
        raise MalformedError(f"a log entry bundle of {len(body)} bytes is oversized")
    view, at = memoryview(body), 0
    out: list[bytes] = []
    while at < len(view) and len(out) < wanted:
        size = int.from_bytes(view[at : at + 4], "big")
        if at + 4 + size > len(view) or size > MAX_ENVELOPE_BYTES:
            raise MalformedError(f"log entry bundle is truncated at entry {len(out)}")
        out.append(bytes(view[at + 4 : at + 4 + size]))
        at += 4 + size
    if at != len(view) or not out:
        raise MalformedError("a log entry bundle holds more or less than the entries asked for")
    return out


def _page(wire: Wire, start: int, end: int) -> list[bytes]:
    stop = min(end, start + PAGE)
    body = wire.send("GET", "/v1/log/entries", params={"start": start, "end": stop}).content
    try:
        return parse_bundle(body, wanted=stop - start)
    except MalformedError as exc:
        raise InclusionProofError(
            f"the registry did not serve log entries from {start}: {exc}"
        ) from exc


def entries(wire: Wire, start: int, end: int) -> Iterator[bytes]:
    """Entries ``[start, end)``, page by page (the next page is fetched while this one is
    used); a page that is empty, truncated or oversized is refused."""
    if end - start <= PAGE:  # one page asked, maybe served in several (pages are byte-capped)
        while start < end:
            page = _page(wire, start, end)
            start += len(page)
            yield from page
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-entries") as pool:
        pending: Future[list[bytes]] | None = pool.submit(_page, wire, start, end)
        while pending is not None:
            page = pending.result()
            start += len(page)
            pending = pool.submit(_page, wire, start, end) if start < end else None
            yield from page


def _require_unrevoked(
    wire: Wire,
    grant_id: str,
    start: int,
    signed: SignedCheckpoint,
    *,
    prefix: SignedCheckpoint | None = None,
) -> None:
    size = signed.checkpoint.size
    answer = _json(wire, "/v1/log/proof/range", start=start, tree_size=size)
    _scan(answer, grant_id, start, signed, prefix, entries(wire, start, size))


def _scan(
    answer: Any,
    grant_id: str,
    start: int,
    signed: SignedCheckpoint,
    prefix: SignedCheckpoint | None,
    shown: Iterator[bytes],
) -> None:
    """L12: the entries ``shown`` from ``start``, proven complete by the range proof
    ``answer``, hold no revocation of the grant; with ``prefix`` (of size ``start``), the proof
    must also rebuild that checkpoint's root."""
    size = signed.checkpoint.size
    if not isinstance(answer, dict) or set(answer) != {"start", "tree_size", "hashes"}:
        raise MalformedError("a range proof is {start, tree_size, hashes}")
    if answer["start"] != start or answer["tree_size"] != size:
        raise MalformedError(f"asked for a range proof from {start} at size {size}, got another")
    hashes = answer["hashes"]
    if not isinstance(hashes, list):
        raise MalformedError("range proof hashes must be a list")
    proof = [hash_from_b64(h, "range proof hash") for h in hashes]
    leaves: list[bytes] = []
    revoked_at: int | None = None
    for offset, entry in enumerate(shown):
        leaves.append(leaf_hash(entry))
        if revoked_at is None and _REVOCATION_MARK in entry and _revokes(entry, grant_id):
            revoked_at = start + offset
    verify_range(
        start=start, leaves=leaves, tree_size=size, proof=proof, root=signed.checkpoint.root
    )
    if prefix is not None:
        verify_range(
            start=start, leaves=[], tree_size=start, proof=proof, root=prefix.checkpoint.root
        )
    if revoked_at is not None:
        raise RevokedError(
            f"grant {grant_id[:12]}… was revoked (log entry {revoked_at}), although the "
            "registry's grant listing may not say so"
        )


def _revokes(entry: bytes, grant_id: str) -> bool:
    try:
        envelope = Envelope.from_json(entry)
        if envelope.payload_type != Revocation.PAYLOAD_TYPE:
            return False
        return bool(json.loads(envelope.payload).get("grant") == grant_id)
    except (MalformedError, ValueError, AttributeError):
        return False
