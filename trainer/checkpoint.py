"""The files of a run folder, read and written in one place.

``checkpoint.pt`` (model, optimizer, step, RNG and data-stream state of every rank, provenance;
replaced atomically), ``metrics.jsonl`` (one JSON object per step or evaluation) and
``config.json`` (the run's settings, which ``--resume`` restores). Only rank 0 writes.

Torch is imported by the two functions that read or write ``checkpoint.pt`` and by nothing
else here, so that verifying an attestation (``attest.py``: a signature and a file's sha256)
needs no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ostraca.protocol_spec import MalformedError

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINT_FORMAT = "ostraca-checkpoint/1"


def atomic_write_bytes(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temp file in the same folder, then ``os.replace`` it into place."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without executing pickled code (``weights_only``)."""
    import torch  # noqa: PLC0415 - only reading the weights needs torch

    ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise MalformedError(f"{path} is not an Ostraca checkpoint")
    return ckpt


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """Replace ``path`` with ``obj`` (a checkpoint dict) atomically."""
    import torch  # noqa: PLC0415 - only writing the weights needs torch

    atomic_write_bytes(path, lambda p: torch.save({"format": CHECKPOINT_FORMAT, **obj}, p))


def write_run_config(run: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` (``{"train": …, "model": …}``)."""
    text = json.dumps(config, indent=2) + "\n"
    atomic_write_bytes(run / CONFIG_FILE, lambda p: p.write_text(text))


def read_run_config(run: Path) -> dict[str, Any] | None:
    """The settings a run saved in ``config.json``; ``None`` when it has none yet."""
    path = run / CONFIG_FILE
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise MalformedError(f"cannot read {path}: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("train"), dict):
        raise MalformedError(f"{path} does not hold a run's settings")
    return obj


def iter_metrics(run: Path) -> Iterator[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``."""
    path = run / METRICS_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def trim_metrics(run: Path, last_step: int) -> None:
    """On resume, drop metrics the interrupted run logged after its checkpoint."""
    if not (run / METRICS_FILE).exists():
        return
    text = "".join(f"{json.dumps(m)}\n" for m in iter_metrics(run) if m.get("step", 0) <= last_step)
    atomic_write_bytes(run / METRICS_FILE, lambda p: p.write_text(text))
