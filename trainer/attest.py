"""Training attestations: a signed statement of which verified data a checkpoint was trained on.

``attestation.json`` beside ``checkpoint.pt`` is a DSSE envelope (JSON) around a
:class:`TrainingAttestation`, signed with the trainer's Ed25519 key. It names the checkpoint by
sha256, and every dataset version consumed by manifest digest, licence, terms digest and grant
ids, as the checkpoint's own provenance records them. Verifying one needs no torch (it checks a
signature and a file's sha256); building one reads the checkpoint, which does.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from ostraca.protocol_spec import (
    ConsumedDataset,
    Envelope,
    SigningKey,
    TrainingAttestation,
    VerifyKey,
    sign_statement,
    utc_now,
    verify_attestation,
)
from ostraca.protocol_spec.verify import Verified

from .checkpoint import CHECKPOINT_FILE, atomic_write_bytes, load_checkpoint

ATTESTATION_FILE = "attestation.json"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _checkpoint_path(run: Path) -> Path:
    return run / CHECKPOINT_FILE if run.is_dir() else run


def build_attestation(
    checkpoint: Path, *, trainer: VerifyKey, now: datetime | None = None
) -> TrainingAttestation:
    """The attestation for ``checkpoint`` (a file, or a run folder holding ``checkpoint.pt``)."""
    path = _checkpoint_path(checkpoint)
    ckpt = load_checkpoint(path)
    datasets = [
        ConsumedDataset(
            dataset=p["dataset"],
            version=p["version"],
            manifest=p["manifest_digest"],
            license=p["license"],
            terms_sha256=p["terms_sha256"],
            grants=list(p["grant_ids"]),
            shards_consumed=p["shards_consumed"],
        )
        for p in ckpt["provenance"]
    ]
    mc = ckpt["model_config"]
    architecture: dict[str, int | str | bool] = {
        k: v for k, v in mc.items() if isinstance(v, int | str | bool)
    }
    architecture["family"] = "ostraca-gpt"
    architecture["tokenizer"] = str(ckpt["tokenizer"])
    return TrainingAttestation(
        trainer=trainer.keyid,
        checkpoint_sha256=file_sha256(path),
        created=now or utc_now(),
        steps=int(ckpt["step"]),
        tokens=int(ckpt["tokens"]),
        architecture=architecture,
        datasets=datasets,
    )


def attest_run(run: Path, key: SigningKey, *, now: datetime | None = None) -> Path:
    """Sign the attestation of ``run``'s checkpoint and write it beside it; return its path."""
    ckpt = _checkpoint_path(run)
    envelope = sign_statement(build_attestation(ckpt, trainer=key.public, now=now), [key])
    out = ckpt.parent / ATTESTATION_FILE
    atomic_write_bytes(out, lambda p: p.write_bytes(envelope.to_json()))
    return out


def verify_run_attestation(
    target: Path, *, trainer_key: VerifyKey, now: datetime | None = None
) -> Verified[TrainingAttestation]:
    """Verify ``attestation.json`` (``target`` is it, or the run folder) against the trainer's
    key and the checkpoint beside it, whose sha256 is recomputed. Raises on any mismatch."""
    path = target / ATTESTATION_FILE if target.is_dir() else target
    envelope = Envelope.from_json(path.read_bytes())
    digest = file_sha256(path.parent / CHECKPOINT_FILE)
    return verify_attestation(
        envelope, trainer_key=trainer_key, now=now or utc_now(), checkpoint_sha256=digest
    )
