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

import pyarrow as pa
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ostraca.protocol_spec import OstracaError, RevokedError, SigningKey, utc_now
from ostraca.server.process import registry_process

from .api import RegistryClient
from .config import load_config
from .keystore import save_signing_key
from .publish import publish
from .stream import open_dataset

DATASET = "psf/cpython-stdlib"
TERMS = (
    "Research and education only. Attribute the Python Software Foundation. "
    "Do not redistribute the raw files outside your research group."
)


def stdlib_corpus(*, max_files: int | None = None) -> tuple[pa.Table, int]:
    """The running Python's standard library sources: one row per file (path, text, size).

    Returns the table and how many files were left out because they are not UTF-8.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
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
class _Actor:
    name: str
    client: RegistryClient
    key: SigningKey
    home: Path


def _make_actor(home: Path, registry: str, name: str, kind: str, affiliation: str) -> _Actor:
    key = SigningKey.generate()
    save_signing_key(
        key,
        home / "identity.pem",
        profile={"name": name, "kind": kind, "affiliation": affiliation},
    )
    client = RegistryClient(load_config(home=home, registry=registry), key=key)
    client.register(name, kind, affiliation)
    client.login()
    return _Actor(name=name, client=client, key=key, home=home)


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path | None = None
    quick: bool = False
    steps: int | None = None
    keep: bool = False


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def run_demo(options: DemoOptions, console: Console) -> None:
    """Run the demo end to end, narrating each step on ``console``."""
    from ostraca.trainer.attest import attest_run, verify_run_attestation  # noqa: PLC0415
    from ostraca.trainer.generate import generate  # noqa: PLC0415
    from ostraca.trainer.train import TrainConfig, train  # noqa: PLC0415

    started = time.monotonic()
    temp = options.data_dir is None
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="ostraca-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    total = 9

    def step(n: int, text: str) -> None:
        console.rule(f"[bold]{n}/{total}[/] {text}", align="left")

    step(1, "Starting a registry on the embedded default (SQLite + local files)")
    registry_dir = data_dir / "registry"
    with registry_process(registry_dir) as url:
        console.print(f"registry {url}  data {registry_dir}")

        step(2, "Creating identities (Ed25519 keys that never leave this machine)")
        inst = _make_actor(
            data_dir / "institution", url, "Python Software Foundation", "institution", "PSF"
        )
        res = _make_actor(data_dir / "researcher", url, "Ada Researcher", "researcher", "Uni")
        inst.client.create_namespace("psf")
        console.print(f"institution {inst.key.keyid[:16]}…  owns namespace psf")
        console.print(f"researcher  {res.key.keyid[:16]}…")

        step(3, "The institution publishes the standard library's source as signed Arrow shards")
        table, skipped = stdlib_corpus(max_files=300 if options.quick else None)
        console.print(
            f"{table.num_rows} files, {sum(table['size'].to_pylist()) / 1e6:.1f} MB of source"
            + (f" ({skipped} non-UTF-8 files left out)" if skipped else "")
        )
        published = publish(
            inst.client,
            table,
            dataset=DATASET,
            license="PSF-2.0",
            terms=TERMS,
            description="CPython standard library source files, one row per file.",
            shard_bytes=(512 if options.quick else 2048) * 1024,
            chunk_bytes=(128 if options.quick else 1024) * 1024,
            progress=console.is_terminal,
        )
        console.print(
            f"published {DATASET} v{published.version}: {len(published.shards)} shards, "
            f"{published.total_bytes / 1e6:.1f} MB, {published.total_rows} rows, "
            f"manifest {published.digest[:16]}…"
        )

        step(4, "The researcher searches, reads the terms, and files a signed access request")
        found = res.client.list_datasets(search="stdlib")
        detail = res.client.get_dataset(DATASET)
        console.print(f"found {[d.dataset for d in found.items]}; licence {detail.license}")
        console.print(f"terms: [italic]{detail.terms}[/]")
        request = res.client.request_access(
            DATASET, purpose="Train a small code model", terms_sha256=detail.terms_sha256
        )
        console.print(f"request {request.request_id[:16]}… status {request.status}")

        step(5, "The institution approves with a signed grant that expires in 30 days")
        inbox = inst.client.list_requests(status="pending")
        grant = inst.client.approve(inbox[0].request_id, expires=utc_now() + timedelta(days=30))
        console.print(f"grant {grant.grant_id[:16]}… expires {grant.expires}")

        step(6, "The researcher trains a Transformer straight from the verified stream")
        run_dir = data_dir / "runs" / "stdlib-toy"
        steps = options.steps or (30 if options.quick else 800)
        cfg = TrainConfig(
            out_dir=run_dir,
            steps=steps,
            text_column="text",
            model_size="toy",
            batch_size=8,
            seq_len=128 if options.quick else 256,
            lr=3e-3,
            eval_every=0,
            progress=console.is_terminal,
            log_every=1,
        )
        with open_dataset(DATASET, client=res.client) as source:
            result = train(cfg, source=source, log=console.print)
        window = max(1, min(10, len(result.losses) // 4))
        loss_before = _mean(result.losses[:window])
        loss_after = _mean(result.losses[-window:])
        console.print(
            f"loss {loss_before:.3f} → {loss_after:.3f} (mean of the first and last "
            f"{window} logged steps of {steps}), "
            f"{result.tokens_per_s:,.0f} tokens/s, data wait {result.data_wait_fraction:.1%}"
        )
        sample = generate(run_dir, prompt="def ", max_tokens=160, temperature=0.8, top_k=40)
        console.print("sample (prompt 'def '):", style="bold")
        console.print("def " + sample, markup=False, highlight=False)

        step(7, "Signing and verifying the training attestation")
        att_path = attest_run(run_dir, res.key)
        verified = verify_run_attestation(run_dir, trainer_key=res.key.public)
        att = verified.statement
        for used in att.datasets:
            console.print(
                f"attested: {used.dataset} v{used.version} manifest {used.manifest[:16]}… "
                f"licence {used.license}, grants {[g[:16] for g in used.grants]}"
            )

        step(8, "The institution revokes the grant; the next read is refused")
        inst.client.revoke(grant.grant_id, reason="Demo over")
        refused = ""
        try:
            with open_dataset(DATASET, client=res.client) as again:
                next(iter(again))
        except OstracaError as exc:
            refused = f"[{exc.code}] {exc}"
            console.print(f"refused: {refused}", markup=False, highlight=False)
        if not refused:
            raise RevokedError("the read after revocation was not refused: this is a bug")

        step(9, "Summary")
        summary = Table(show_header=False, box=None)
        summary.add_row("published", f"{DATASET} v{published.version} (PSF-2.0)")
        summary.add_row(
            "",
            f"{len(published.shards)} shards, {published.total_bytes / 1e6:.1f} MB, "
            f"{published.total_rows} rows",
        )
        summary.add_row("granted", f"{grant.grant_id[:16]}… to {res.name}, then revoked")
        summary.add_row("trained", f"{att.steps} steps, {att.tokens:,} tokens")
        summary.add_row("throughput", f"{result.tokens_per_s:,.0f} tokens/s")
        summary.add_row("loss", f"{loss_before:.3f} → {loss_after:.3f}")
        summary.add_row("attestation", str(att_path))
        summary.add_row("read after revocation", Text(refused))
        summary.add_row("artifacts", str(data_dir))
        summary.add_row("time", f"{time.monotonic() - started:.0f} s")
        console.print(summary)
        inst.client.close()
        res.client.close()
    if temp and not options.keep:
        console.print(f"(removing {data_dir}; use --data-dir or --keep to keep it)")
        shutil.rmtree(data_dir, ignore_errors=True)
