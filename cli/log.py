"""Monitor commands: ``ostraca log verify`` recomputes the registry's whole log and checks it
against its checkpoint; ``ostraca log watch NAMESPACE`` lists every statement about a namespace,
so a publisher sees every grant and revocation the registry shows anyone."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ostraca.client.tlog import LogReader
from ostraca.client.wire import Wire
from ostraca.protocol_spec import Envelope, MalformedError
from ostraca.protocol_spec.errors import InclusionProofError
from ostraca.protocol_spec.merkle import leaf_hash, root_from_leaves
from ostraca.protocol_spec.models import utc_now

from .common import JsonOpt, config, console, count, print_json

app = typer.Typer(help="Monitor the registry's transparency log.")

_PREFIX = "application/vnd.ostraca."


@dataclass(frozen=True, slots=True)
class VerifyReport:
    size: int
    seconds: float


@dataclass(frozen=True, slots=True)
class LogStatement:
    """One log entry, decoded for people: its index, kind, dataset (if any) and statement."""

    index: int
    kind: str
    dataset: str | None
    statement: dict[str, Any]

    @property
    def namespace(self) -> str | None:
        return None if self.dataset is None else self.dataset.split("/", 1)[0]


def _walk(registry: str, home: Path, now: datetime, visit: Callable[[int, bytes], None]) -> int:
    """Read every entry (``visit(index, entry)``), rebuild the root, compare it with the checked
    checkpoint, then keep that checkpoint; the log's size. InclusionProofError if they differ."""
    wire = Wire(registry)
    try:
        reader = LogReader(wire, home)
        signed = reader.checkpoint(now)
        size = signed.checkpoint.size

        def leaves() -> Iterator[bytes]:
            for index, entry in enumerate(reader.entries(0, size)):
                visit(index, entry)
                yield leaf_hash(entry)

        if root_from_leaves(leaves()) != signed.checkpoint.root:
            raise InclusionProofError(
                f"the {size} entries of {registry} do not make the root of its checkpoint"
            )
        reader.accept()
    finally:
        wire.close()
    return size


def verify_log(registry: str, *, home: Path, now: datetime) -> VerifyReport:
    """Fetch every entry, rebuild the tree and check it against the registry's checkpoint."""
    start = time.perf_counter()
    size = _walk(registry, home, now, lambda _index, _entry: None)
    return VerifyReport(size=size, seconds=time.perf_counter() - start)


def decode_entry(index: int, entry: bytes) -> LogStatement:
    """What an entry says: an envelope's payload, or a registry record itself."""
    try:
        raw = json.loads(entry)
        if "payload" in raw:
            envelope = Envelope.from_json(entry)
            kind, body = envelope.payload_type, json.loads(envelope.payload)
        else:
            kind, body = raw["payloadType"], raw
    except (ValueError, KeyError, TypeError, MalformedError) as exc:
        raise MalformedError(f"log entry {index} is neither an envelope nor a record") from exc
    short = kind.removeprefix(_PREFIX).removesuffix("+json").removeprefix("log.")
    dataset = body.get("dataset") if isinstance(body.get("dataset"), str) else None
    return LogStatement(index=index, kind=short, dataset=dataset, statement=body)


def read_log(registry: str, *, home: Path, now: datetime) -> list[LogStatement]:
    """Every entry of the log, decoded, once checked complete against the checkpoint."""
    statements: list[LogStatement] = []
    _walk(registry, home, now, lambda index, entry: statements.append(decode_entry(index, entry)))
    return statements


@app.command()
def verify(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Recompute the registry's whole log and check it against its signed checkpoint."""
    cfg = config(ctx)
    report = verify_log(cfg.registry, home=cfg.home, now=utc_now())
    rate = report.size / report.seconds if report.seconds else 0.0
    if as_json:
        print_json({"size": report.size, "seconds": report.seconds, "entries_per_second": rate})
        return
    console.print(
        f"log of {cfg.registry}: {count(report.size, 'entry', 'entries')} verified against "
        f"its checkpoint ({rate:,.0f} entries/s)"
    )


@app.command()
def watch(
    ctx: typer.Context,
    namespace: Annotated[str, typer.Argument(help="The namespace to list statements about.")],
    as_json: JsonOpt = False,
) -> None:
    """Every statement in the registry's log about a namespace (manifests, requests, grants,
    revocations), checked against the log's checkpoint."""
    cfg = config(ctx)
    about = [
        s for s in read_log(cfg.registry, home=cfg.home, now=utc_now()) if s.namespace == namespace
    ]
    if as_json:
        print_json([{"index": s.index, "kind": s.kind, "statement": s.statement} for s in about])
        return
    for s in about:
        who = s.statement.get("grantee") or s.statement.get("requester") or ""
        extra = f" version {s.statement['version']}" if "version" in s.statement else ""
        console.print(f"{s.index:>8}  {s.kind:<16} {s.dataset}{extra} {who}".rstrip())
