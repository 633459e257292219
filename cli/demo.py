"""``ostraca demo``: the whole story on the embedded default, narrated.

A registry (SQLite + local files) starts on a free loopback port; an institution publishes the
Python standard library's source (licence PSF-2.0) as signed Arrow shards; a researcher finds it,
accepts its terms and asks for access; the institution grants it; the researcher trains a small
Transformer straight from the verified stream, generates a sample, signs a training attestation
and verifies it; the institution revokes the grant and the next read is refused.
"""

from __future__ import annotations

import shutil
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pyarrow as pa
import typer
from rich.table import Table
from rich.text import Text

from ostraca.client.api import RegistryClient
from ostraca.client.config import load_config
from ostraca.client.keystore import save_signing_key
from ostraca.client.publishing import PublishResult, publish
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import OstracaError, RevokedError, SigningKey, utc_now
from ostraca.server.process import registry_process

from .common import console, count, size

if TYPE_CHECKING:
    from ostraca.trainer.run import Evaluation

DATASET = "psf/cpython-stdlib"
TERMS = (
    "Research and education only. Attribute the Python Software Foundation. "
    "Do not redistribute the raw files outside your research group."
)


LEFT_OUT = frozenset({"test", "tests", "idle_test", "encodings", "pydoc_data"})
"""Folders not published: the test suites, and generated tables (the codecs' character maps,
pydoc's topics) that are data rather than code."""


def stdlib_corpus(*, max_files: int | None = None) -> tuple[pa.Table, int]:
    """The running Python's standard library sources, test suites and generated tables left out
    (:data:`LEFT_OUT`): one row per file (path, text, size), in path order.

    Returns the table and how many files were left out because they are not UTF-8.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not {"site-packages", *LEFT_OUT} & set(p.relative_to(root).parts[:-1])
    )
    if max_files is not None:
        files = files[:max_files]
    paths: list[str] = []
    texts: list[str] = []
    sizes: list[int] = []
    skipped = 0
    for path in files:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            skipped += 1
            continue
        paths.append(path.relative_to(root).as_posix())
        texts.append(text)
        sizes.append(len(data))
    table = pa.table(
        {
            "path": pa.array(paths, pa.string()),
            "text": pa.array(texts, pa.large_string()),
            "size": pa.array(sizes, pa.int64()),
        }
    )
    return table, skipped


@dataclass
class Actor:
    name: str
    client: RegistryClient
    key: SigningKey
    home: Path


def make_actor(home: Path, registry: str, name: str, kind: str, affiliation: str) -> Actor:
    """A new identity under ``home``, registered and logged in on ``registry``."""
    key = SigningKey.generate()
    save_signing_key(
        key,
        home / "identity.pem",
        profile={"name": name, "kind": kind, "affiliation": affiliation},
    )
    client = RegistryClient(load_config(home=home, registry=registry), key=key)
    client.register(name, kind, affiliation)
    client.login()
    return Actor(name=name, client=client, key=key, home=home)


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path | None = None
    quick: bool = False
    steps: int | None = None
    keep: bool = False


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


app = typer.Typer()

_TOTAL_STEPS = 9


@dataclass(frozen=True)
class DemoReport:
    """What the demo's training reported: its run folder, how many shards were published, the
    last held-out evaluation (the loss, and the shards it was measured on) and the sample."""

    run_dir: Path
    published_shards: int
    held_out: Evaluation
    sample: str


@dataclass
class _Story:
    """What the steps share: the options, the two actors and what each step produced."""

    options: DemoOptions
    data_dir: Path
    inst: Actor
    res: Actor
    summary: Table
    report: DemoReport | None = None


def _step(n: int, text: str) -> None:
    console.rule(f"[bold]{n}/{_TOTAL_STEPS}[/] {text}", align="left")


def _publish(story: _Story) -> PublishResult:
    _step(3, "The institution publishes the standard library's source as signed Arrow shards")
    quick = story.options.quick
    table, skipped = stdlib_corpus(max_files=150 if quick else None)
    console.print(
        f"{count(table.num_rows, 'file')}, {size(sum(table['size'].to_pylist()))} of source "
        "(test suites and generated tables left out"
        + (f", and {skipped} non-UTF-8 files)" if skipped else ")")
    )
    published = publish(
        story.inst.client,
        table,
        dataset=DATASET,
        license="PSF-2.0",
        terms=TERMS,
        description="CPython standard library source files, one row per file.",
        shard_bytes=(128 if quick else 256) * 1024,  # enough shards for 4 streams and 1 held out
        chunk_bytes=64 * 1024,
        progress=console.is_terminal,
    )
    console.print(
        f"published {DATASET} v{published.version}: {count(len(published.shards), 'shard')}, "
        f"{size(published.total_bytes)}, {count(published.total_rows, 'row')}, "
        f"manifest {published.digest[:16]}…"
    )
    story.summary.add_row("published", f"{DATASET} v{published.version} (PSF-2.0)")
    story.summary.add_row(
        "",
        f"{count(len(published.shards), 'shard')}, {size(published.total_bytes)}, "
        f"{count(published.total_rows, 'row')}",
    )
    return published


def _request_and_grant(story: _Story) -> str:
    """Steps 4 and 5; returns the grant's id."""
    _step(4, "The researcher searches, reads the terms, and files a signed access request")
    res, inst = story.res.client, story.inst.client
    found = res.list_datasets(search="stdlib")
    detail = res.get_dataset(DATASET)
    console.print(f"found {[d.dataset for d in found.items]}; licence {detail.license}")
    console.print(f"terms: [italic]{detail.terms}[/]")
    request = res.request_access(
        DATASET, purpose="Train a small code model", terms_sha256=detail.terms_sha256
    )
    console.print(f"request {request.request_id[:16]}… status {request.status}")

    _step(5, "The institution approves with a signed grant that expires in 30 days")
    inbox = inst.list_requests(status="pending")
    grant = inst.approve(inbox[0].request_id, expires=utc_now() + timedelta(days=30))
    console.print(f"grant {grant.grant_id[:16]}… expires {grant.expires}")
    story.summary.add_row("granted", f"{grant.grant_id[:16]}… to {story.res.name}, then revoked")
    return grant.grant_id


def _train(story: _Story, published: PublishResult) -> Path:
    """Step 6; returns the run folder."""
    import torch  # noqa: PLC0415

    from ostraca.trainer.generate import generate  # noqa: PLC0415 - imports torch
    from ostraca.trainer.recipes import demo_config, demo_threads  # noqa: PLC0415
    from ostraca.trainer.train import train  # noqa: PLC0415

    _step(6, "The researcher trains a Transformer straight from the verified stream")
    run_dir = story.data_dir / "runs" / "stdlib"
    opts = story.options
    cfg = demo_config(run_dir, quick=opts.quick, steps=opts.steps, progress=console.is_terminal)
    torch.set_num_threads(demo_threads())
    console.print(
        f"{cfg.steps} steps of {cfg.grad_accum * cfg.batch_size} × {cfg.seq_len} tokens "
        f"(byte-level BPE of {cfg.bpe_vocab} tokens, trained on the training shards) on "
        f"{torch.get_num_threads()} CPU thread(s); the last shards are held out for evaluation"
    )
    with open_dataset(DATASET, client=story.res.client) as source:
        result = train(cfg, source=source, log=console.print)
    window = max(1, min(10, len(result.losses) // 4))
    loss_before = _mean(result.losses[:window])
    loss_after = _mean(result.losses[-window:])
    first, last = result.evals[0], result.evals[-1]
    held_out = f"{first.loss_per_byte:.3f} → {last.loss_per_byte:.3f} nats/byte"
    console.print(
        f"held-out loss {held_out} on shards {list(last.shards)} (never trained on; "
        f"{last.loss:.3f} nats/token ÷ {last.bytes_per_token:.2f} bytes/token of "
        f"{last.tokens:,} held-out tokens); training loss {loss_before:.3f} → "
        f"{loss_after:.3f} nats/token; {result.tokens_per_s:,.0f} tokens/s, "
        f"data wait {result.data_wait_fraction:.1%}"
    )
    prompt = "    def"  # a method; no trailing space: BPE keeps a word's space in its token
    sample = prompt + generate(run_dir, prompt=prompt, max_tokens=100, temperature=0.7, top_k=40)
    console.print(f"sample (prompt {prompt!r}, temperature 0.7):", style="bold")
    console.print(sample, markup=False, highlight=False)
    story.summary.add_row("throughput", f"{result.tokens_per_s:,.0f} tokens/s")
    story.summary.add_row("held-out loss", f"{held_out} (shards {list(last.shards)})")
    story.summary.add_row("training loss", f"{loss_before:.3f} → {loss_after:.3f} nats/token")
    story.report = DemoReport(
        run_dir=run_dir,
        published_shards=len(published.shards),
        held_out=last,
        sample=sample,
    )
    return run_dir


def _attest(story: _Story, run_dir: Path) -> None:
    from ostraca.trainer.attest import attest_run, verify_run_attestation  # noqa: PLC0415

    _step(7, "Signing and verifying the training attestation")
    att_path = attest_run(run_dir, story.res.key)
    att = verify_run_attestation(run_dir, trainer_key=story.res.key.public).statement
    for used in att.datasets:
        console.print(
            f"attested: {used.dataset} v{used.version} manifest {used.manifest[:16]}… "
            f"licence {used.license}, grants {[g[:16] for g in used.grants]}"
        )
    story.summary.add_row("trained", f"{att.steps} steps, {att.tokens:,} tokens")
    story.summary.add_row("attestation", str(att_path))


def _revoke(story: _Story, grant_id: str) -> None:
    _step(8, "The institution revokes the grant; the next read is refused")
    story.inst.client.revoke(grant_id, reason="Demo over")
    refused = ""
    try:
        with open_dataset(DATASET, client=story.res.client) as again:
            next(iter(again))
    except OstracaError as exc:
        refused = f"[{exc.code}] {exc}"
        console.print(f"refused: {refused}", markup=False, highlight=False)
    if not refused:
        raise RevokedError("the read after revocation was not refused: this is a bug")
    story.summary.add_row("read after revocation", Text(refused))


def run_demo(options: DemoOptions) -> DemoReport:
    """Run the demo end to end, narrating each step on the console; returns what its
    training reported."""
    started = time.monotonic()
    temp = options.data_dir is None
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="ostraca-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    _step(1, "Starting a registry on the embedded default (SQLite + local files)")
    registry_dir = data_dir / "registry"
    with registry_process(registry_dir) as url:
        console.print(f"registry {url}  data {registry_dir}")
        _step(2, "Creating identities (Ed25519 keys that never leave this machine)")
        inst = make_actor(
            data_dir / "institution", url, "Python Software Foundation", "institution", "PSF"
        )
        res = make_actor(data_dir / "researcher", url, "Ada Researcher", "researcher", "Uni")
        inst.client.create_namespace("psf")
        console.print(f"institution {inst.key.keyid[:16]}…  owns namespace psf")
        console.print(f"researcher  {res.key.keyid[:16]}…")
        story = _Story(options, data_dir, inst, res, Table(show_header=False, box=None))
        published = _publish(story)
        grant_id = _request_and_grant(story)
        _attest(story, _train(story, published))
        _revoke(story, grant_id)
        _step(9, "Summary")
        story.summary.add_row("artifacts", str(data_dir))
        story.summary.add_row("time", f"{time.monotonic() - started:.0f} s")
        console.print(story.summary)
        inst.client.close()
        res.client.close()
    if temp and not options.keep:
        console.print(f"(removing {data_dir}; use --data-dir or --keep to keep it)")
        shutil.rmtree(data_dir, ignore_errors=True)
    assert story.report is not None
    return story.report


@app.command()
def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Keep everything here (registry, identities, run) [default: temp]."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small corpus and few steps: under a minute.")
    ] = False,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps.")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the temp dir afterwards.")] = False,
) -> None:
    """The whole story end to end on the embedded default: publish, request, grant, train,
    attest, revoke. Needs no configuration and no network."""
    run_demo(DemoOptions(data_dir=data_dir, quick=quick, steps=steps, keep=keep))
