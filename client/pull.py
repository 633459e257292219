"""Pull a whole dataset version to a directory, and re-verify such a copy offline.

A pulled copy is self-describing::

    DIR/manifest.json        the manifest envelope, byte for byte as published
    DIR/grant.json           the grant envelope that allowed the download
    DIR/keys.json            {"namespace": ns, "keys": {keyid: base64}}: the publisher keys trusted
    DIR/shards/<sha256>      each shard (Arrow IPC stream), named by its digest
    DIR/chunks/<sha256>      each shard's chunk list, named by its digest

:func:`pull` reuses the verified-streaming machinery: every shard is verified chunk by chunk as
it downloads (or comes from the verified cache) and only then renamed into place; a file already
present with the right size and digest is kept (a pull resumes). :func:`verify_copy` checks a
copy with no network: signatures (with the pinned keys of ``$OSTRACA_HOME`` when there are some,
else ``keys.json``), the grant, every digest, every chunk; it returns a report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ostraca.protocol_spec import (
    DigestMismatchError,
    Envelope,
    MalformedError,
    OstracaError,
    ShardEntry,
    VerifyKey,
    utc_now,
    verify_grant,
    verify_manifest,
)

from .api import RegistryClient
from .config import ClientConfig
from .fetch import DIGEST_BYTES, ChunkVerifier
from .stream import VerifiedDataset, open_dataset
from .trust import TrustStore

HASH_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PullResult:
    dataset: str
    version: int
    manifest_digest: str
    grant_id: str
    directory: Path
    shards: int
    bytes: int
    downloaded_bytes: int


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(HASH_BLOCK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _pull_shard(ds: VerifiedDataset, index: int, dest: Path) -> int:
    """Put shard ``index`` at ``dest`` verified; return how many bytes came over the network."""
    entry = ds.manifest.statement.shards[index]
    target = dest / "shards" / entry.sha256
    chunk_target = dest / "chunks" / entry.chunks
    chunks = ds.chunk_list(index)
    if not chunk_target.exists():
        _write_atomic(chunk_target, chunks)
    if (
        target.exists()
        and target.stat().st_size == entry.bytes
        and _file_sha256(target) == entry.sha256
    ):
        return 0
    cached = ds.cache.blob_path(entry.sha256)
    fh = ds.cache.open(entry.sha256, entry.bytes)
    if fh is not None:
        fh.close()
        tmp = target.with_name(f".{entry.sha256}.tmp{os.getpid()}")
        try:
            os.link(cached, tmp)
        except OSError:
            shutil.copyfile(cached, tmp)
        os.replace(tmp, target)
        return 0
    part = target.with_name(f".{entry.sha256}.part")
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size != entry.bytes:
            os.ftruncate(fd, entry.bytes)
        verifier = ChunkVerifier(
            name=f"shard {index} ({entry.sha256[:12]}…)",
            digest=entry.sha256,
            size=entry.bytes,
            chunk_bytes=ds.manifest.statement.chunk_bytes,
            chunk_list=chunks,
            fd=fd,
        )
        offset = verifier.resume_existing()
        try:
            ds.fetcher.fetch(
                entry.sha256, size=entry.bytes, sink=verifier, what=verifier.name, offset=offset
            )
            verifier.finish()
        except DigestMismatchError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)
        return entry.bytes - offset
    finally:
        os.close(fd)


def pull(
    dataset: str,
    dest: Path,
    *,
    version: int | None = None,
    config: ClientConfig | None = None,
    client: RegistryClient | None = None,
    parallel: int = 3,
    now: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> PullResult:
    """Download and verify every shard of ``dataset`` (``version`` or the latest) into ``dest``.

    ``on_start(shards, total_bytes)`` is called once the manifest verified, ``on_progress(n)``
    after each shard with its size (progress bars).
    """
    dest = Path(dest)
    with open_dataset(
        dataset, version=version, config=config, client=client, now=now, recheck_access=False
    ) as ds:
        m = ds.manifest.statement
        (dest / "shards").mkdir(parents=True, exist_ok=True)
        (dest / "chunks").mkdir(parents=True, exist_ok=True)
        _write_atomic(dest / "manifest.json", ds.manifest_envelope.to_json())
        _write_atomic(dest / "grant.json", ds.grant_envelope.to_json())
        publisher = ds.manifest.signer
        keys = {"namespace": m.namespace, "keys": {publisher.keyid: publisher.b64}}
        _write_atomic(dest / "keys.json", (json.dumps(keys, indent=2) + "\n").encode())
        if on_start is not None:
            on_start(len(m.shards), m.total_bytes)
        downloaded = 0
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(_pull_shard, ds, i, dest) for i in range(len(m.shards))]
            try:
                for i, fut in enumerate(futures):
                    downloaded += fut.result()
                    if on_progress is not None:
                        on_progress(m.shards[i].bytes)
            finally:
                for fut in futures:
                    fut.cancel()
        return PullResult(
            dataset=m.dataset,
            version=m.version,
            manifest_digest=ds.manifest.digest,
            grant_id=ds.grant.digest,
            directory=dest,
            shards=len(m.shards),
            bytes=m.total_bytes,
            downloaded_bytes=downloaded,
        )


# offline verification


@dataclass(frozen=True, slots=True)
class Check:
    what: str
    ok: bool
    detail: str = ""


@dataclass
class CopyReport:
    """The outcome of :func:`verify_copy`: every check, in order."""

    directory: Path
    checks: list[Check] = field(default_factory=list)
    dataset: str | None = None
    version: int | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def _load_keys(directory: Path, home: Path | None) -> tuple[dict[str, VerifyKey], str]:
    data = json.loads((directory / "keys.json").read_text())
    ns = str(data["namespace"])
    if home is not None:
        pinned = TrustStore(home).pinned(ns)
        if pinned is not None:
            return pinned, f"keys pinned in {home}"
    keys = {}
    for keyid, b64 in dict(data["keys"]).items():
        key = VerifyKey.from_b64(str(b64))
        if key.keyid != keyid:
            raise MalformedError(f"keys.json: key {keyid[:16]}… has another id")
        keys[keyid] = key
    return keys, "keys.json (no pin for this namespace here)"


def _check_shard(directory: Path, index: int, entry: ShardEntry, chunk_bytes: int) -> Check:
    what = f"shard {index} {entry.sha256[:16]}…"
    path = directory / "shards" / entry.sha256
    chunk_path = directory / "chunks" / entry.chunks
    try:
        chunks = chunk_path.read_bytes()
    except FileNotFoundError:
        return Check(what, ok=False, detail="chunk list missing")
    if hashlib.sha256(chunks).hexdigest() != entry.chunks:
        return Check(what, ok=False, detail="chunk list does not match the manifest")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Check(what, ok=False, detail="file missing")
    if size != entry.bytes:
        return Check(what, ok=False, detail=f"{size} bytes, the manifest says {entry.bytes}")
    whole = hashlib.sha256()
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    bad: list[int] = []
    with path.open("rb", buffering=0) as fh:
        index_ = 0
        while n := fh.readinto(buf):
            piece = view[:n]
            whole.update(piece)
            expected = chunks[index_ * DIGEST_BYTES : (index_ + 1) * DIGEST_BYTES]
            if hashlib.sha256(piece).digest() != expected:
                bad.append(index_)
            index_ += 1
    if whole.hexdigest() != entry.sha256:
        where = f" (chunk(s) {', '.join(map(str, bad[:8]))} differ)" if bad else ""
        return Check(what, ok=False, detail=f"sha256 does not match the manifest{where}")
    if bad:
        return Check(what, ok=False, detail=f"chunk(s) {bad[:8]} do not match the chunk list")
    return Check(what, ok=True, detail=f"{entry.rows} rows, {entry.bytes} bytes")


def verify_copy(
    directory: Path, *, home: Path | None = None, now: datetime | None = None
) -> CopyReport:
    """Re-verify a pulled copy with no network; never raises for a failed check (see report)."""
    directory = Path(directory)
    now = now or utc_now()
    report = CopyReport(directory=directory)
    try:
        keys, key_source = _load_keys(directory, home)
        manifest_env = Envelope.from_json((directory / "manifest.json").read_bytes())
        manifest = verify_manifest(manifest_env, publisher_keys=keys, now=now)
    except (OstracaError, OSError, ValueError, KeyError, TypeError) as exc:
        report.checks.append(Check("manifest signature", ok=False, detail=str(exc)))
        return report
    m = manifest.statement
    report.dataset, report.version = m.dataset, m.version
    report.checks.append(
        Check(
            "manifest signature",
            ok=True,
            detail=f"{m.dataset}@{m.version} signed by {manifest.signer.keyid[:16]}… "
            f"({key_source})",
        )
    )
    try:
        grant_env = Envelope.from_json((directory / "grant.json").read_bytes())
        grantee = json.loads(grant_env.payload).get("grantee", "")
        grant = verify_grant(grant_env, manifest=manifest, grantee=str(grantee), now=now)
        report.checks.append(
            Check(
                "grant",
                ok=True,
                detail=f"{grant.digest[:16]}… for {grant.statement.grantee[:16]}…, valid until "
                f"{grant.statement.expires:%Y-%m-%dT%H:%M:%SZ}",
            )
        )
    except (OstracaError, OSError, ValueError, AttributeError) as exc:
        report.checks.append(Check("grant", ok=False, detail=str(exc)))
    for i, entry in enumerate(m.shards):
        report.checks.append(_check_shard(directory, i, entry, m.chunk_bytes))
    return report
