"""Pull a whole dataset version to a directory, and re-verify such a copy offline.

A pulled copy is self-describing::

    DIR/manifest.json        the manifest envelope, byte for byte as published
    DIR/grant.json           the grant envelope that allowed the download
    DIR/keys.json            {"namespace": ns, "keys": {keyid: base64}}: the publisher keys trusted
    DIR/key-grants.json      an encrypted version's key grants for the puller (ENCRYPTION.md 4.2)
    DIR/shards/<sha256>      each shard (Arrow IPC stream; sealed when encrypted), by its digest
    DIR/chunks/<sha256>      each shard's chunk list, named by its digest

:func:`pull` reuses the verified-streaming machinery: every shard is verified chunk by chunk as
it downloads (or comes from the verified cache) and only then renamed into place; a file already
present with the right size and digest is kept (a pull resumes). :func:`verify_copy` checks a
copy: signatures (with the pinned keys of ``$OSTRACA_HOME`` when there are some, else
``keys.json``), the grant, every digest, every chunk — all offline — and, given a client, whether
the registry has revoked the grant since (the report says "revocation not checked (offline)"
when it cannot be asked); it returns a report. Both it and
:func:`~ostraca.client.local.open_pulled` (train from a copy, offline) check with the functions of
``local.py``, which check shards with streaming's :class:`~ostraca.client.fetch.ChunkVerifier`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ostraca.protocol_spec import (
    DatasetManifest,
    DigestMismatchError,
    ExpiredError,
    OstracaError,
    RevokedError,
    ShardEntry,
    VerificationError,
    Verified,
    check_grant_window,
    utc_now,
)
from ostraca.protocol_spec.errors import UnavailableError
from ostraca.protocol_spec.models import AccessGrant

from .api import RegistryClient
from .config import ClientConfig
from .fetch import ChunkVerifier
from .files import atomic_write
from .local import (
    CHUNKS_DIR,
    GRANT_FILE,
    KEY_GRANTS_FILE,
    KEYS_FILE,
    MANIFEST_FILE,
    SHARDS_DIR,
    copy_keys,
    verify_copy_grant,
    verify_copy_manifest,
    verify_shard_file,
)
from .stream import VerifiedDataset, open_dataset


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


def _pull_shard(ds: VerifiedDataset, index: int, dest: Path) -> int:
    """Put shard ``index`` at ``dest`` verified; return how many bytes came over the network."""
    entry = ds.manifest.statement.shards[index]
    target = dest / SHARDS_DIR / entry.sha256
    chunk_target = dest / CHUNKS_DIR / entry.chunks
    chunks = ds.chunk_list(index)
    if not chunk_target.exists():
        atomic_write(chunk_target, chunks)
    try:  # already here and intact (a pull that resumes)
        verify_shard_file(
            dest,
            entry,
            chunk_bytes=ds.manifest.statement.chunk_bytes,
            what=f"shard {index}",
            chunk_digest=ds.manifest.statement.chunk_algorithm,
        )
    except VerificationError:
        pass
    else:
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
            chunk_digest=ds.manifest.statement.chunk_algorithm,
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
    on_progress: Callable[[int, int], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> PullResult:
    """Download and verify every shard of ``dataset`` (``version`` or the latest) into ``dest``.

    ``on_start(shards, total_bytes)`` is called once the manifest verified, and
    ``on_progress(transferred, present)`` after each shard: the bytes of it that came over the
    network now, and those that were already here (in the copy, the cache, or a partial file a
    pull left) — so that a progress bar's speed counts only the first.
    """
    dest = Path(dest)
    with open_dataset(
        dataset, version=version, config=config, client=client, now=now, recheck_access=False
    ) as ds:
        m = ds.manifest.statement
        (dest / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        (dest / CHUNKS_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write(dest / MANIFEST_FILE, ds.manifest_envelope.to_json())
        atomic_write(dest / GRANT_FILE, ds.grant_envelope.to_json())
        publisher = ds.manifest.signer
        keys = {"namespace": m.namespace, "keys": {publisher.keyid: publisher.b64}}
        atomic_write(dest / KEYS_FILE, (json.dumps(keys, indent=2) + "\n").encode())
        if ds.data_keys is not None:
            grants = [e.to_dict() for e in ds.data_keys.envelopes]
            atomic_write(dest / KEY_GRANTS_FILE, (json.dumps(grants, indent=1) + "\n").encode())
        if on_start is not None:
            on_start(len(m.shards), m.total_bytes)
        downloaded = 0
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(_pull_shard, ds, i, dest) for i in range(len(m.shards))]
            try:
                for i, fut in enumerate(futures):
                    transferred = fut.result()
                    downloaded += transferred
                    if on_progress is not None:
                        on_progress(transferred, m.shards[i].bytes - transferred)
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
    revocation: str = "revocation not checked (offline)"
    """Whether the registry was asked about the grant, or why not."""
    access_ended: OstracaError | None = None
    """The registry's answer when the grant was revoked or expired (the CLI exits 3)."""

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def _check_shard(directory: Path, index: int, entry: ShardEntry, m: DatasetManifest) -> Check:
    what = f"shard {index} {entry.sha256[:16]}…"
    try:
        verify_shard_file(
            directory, entry, chunk_bytes=m.chunk_bytes, what=what, chunk_digest=m.chunk_algorithm
        )
    except VerificationError as exc:
        return Check(what, ok=False, detail=exc.message.removeprefix(f"{what}: "))
    return Check(what, ok=True, detail=f"{entry.rows} rows, {entry.bytes} bytes")


def _check_revocation(
    report: CopyReport, client: RegistryClient, grant: Verified[AccessGrant], now: datetime
) -> None:
    """Ask the registry whether ``grant`` still holds; a revoked or expired one is a failed
    check (and :attr:`CopyReport.access_ended`), a registry out of reach only a note."""
    try:
        item = client.get_grant(grant.digest)
        check_grant_window(grant.statement, grant_id=grant.digest, now=now, revoked=item.revoked)
    except (RevokedError, ExpiredError) as exc:
        report.access_ended = exc
        report.revocation = f"revocation checked with {client.base_url}"
        report.checks.append(Check("revocation", ok=False, detail=exc.message))
        return
    except UnavailableError:
        return
    except OstracaError as exc:
        report.revocation = f"revocation not checked ({exc.code}: {exc.message})"
        return
    report.revocation = f"revocation checked with {client.base_url}"
    report.checks.append(Check("revocation", ok=True, detail=f"not revoked ({client.base_url})"))


def verify_copy(
    directory: Path,
    *,
    home: Path | None = None,
    now: datetime | None = None,
    client: RegistryClient | None = None,
) -> CopyReport:
    """Re-verify a pulled copy, offline but for the revocation check with ``client`` (none
    without one); never raises for a failed check (see the report)."""
    directory = Path(directory)
    now = now or utc_now()
    report = CopyReport(directory=directory)
    try:
        keys = copy_keys(directory, home=home)
        manifest, _ = verify_copy_manifest(directory, keys, now=now)
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
            f"({keys.source})",
        )
    )
    try:
        grant, _ = verify_copy_grant(directory, manifest, now=now, home=home)
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
        report.revocation = "revocation not checked (the grant did not verify)"
        if isinstance(exc, RevokedError | ExpiredError):
            report.access_ended = exc
    else:
        if client is not None:
            _check_revocation(report, client, grant, now)
    for i, entry in enumerate(m.shards):
        report.checks.append(_check_shard(directory, i, entry, m))
    return report
