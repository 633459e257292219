"""Witnesses (c2sp.org/tlog-witness; protocol_spec/LOG.md section 6), both sides.

:func:`create_witness_app` is the witness, ``ostraca witness run``: a small FastAPI service that
knows some logs (origin and vkey), answers ``POST /add-checkpoint`` after rules W1–W5 (the pure
checks are :func:`~ostraca.protocol_spec.checkpoint.check_witness_request`), and keeps the last
checkpoint it cosigned per log in one JSON file, written atomically before it answers.

:class:`WitnessPool` is the registry's side: after signing a checkpoint it submits it, with a
consistency proof from the size each witness last cosigned, and appends their cosignatures.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from sqlalchemy.orm import Session

from ostraca.protocol_spec.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    WitnessRequest,
    check_witness_request,
    cosign_checkpoint,
    open_checkpoint,
)
from ostraca.protocol_spec.errors import ConflictError, MalformedError, OstracaError, ProofError
from ostraca.protocol_spec.merkle import NodeSource, consistency_proof
from ostraca.protocol_spec.models import utc_now
from ostraca.protocol_spec.note import COSIGNATURE_V1, Note, NoteSignature, NoteSigner, NoteVerifier

from .deps import Clock
from .tlog import load_log_key, replace_checkpoint, with_nodes

__all__ = ["SIZE_TYPE", "Witness", "WitnessPool", "create_witness_app"]

SIZE_TYPE = "text/x.tlog.size"
_log = logging.getLogger("ostraca.witness")


@dataclass
class Witness:
    """A witness's key, the logs it follows (origin -> log key) and its state file."""

    signer: NoteSigner
    logs: Mapping[str, NoteVerifier]
    state_path: Path
    clock: Clock = utc_now
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(
        cls, *, name: str, key_path: Path, log_vkeys: Sequence[str], data_dir: Path
    ) -> Witness:
        logs = {v.name: v for v in map(NoteVerifier.from_vkey, log_vkeys)}
        key = load_log_key(key_path)
        signer = NoteSigner(name=name, key=key, sig_type=COSIGNATURE_V1)
        return cls(signer=signer, logs=logs, state_path=data_dir / "witness-state.json")

    @property
    def vkey(self) -> str:
        return self.signer.verifier.to_vkey()

    def _state(self) -> dict[str, str]:
        if not self.state_path.exists():
            return {}
        data: dict[str, str] = json.loads(self.state_path.read_bytes())
        return data

    def _save(self, state: dict[str, str]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, self.state_path)

    def latest(self, origin: str, now: datetime) -> SignedCheckpoint | None:
        note = self._state().get(origin)
        if note is None:
            return None
        return open_checkpoint(base64.b64decode(note), log=self.logs[origin], now=now)

    def add_checkpoint(self, body: bytes) -> tuple[int, str, bytes]:
        """(status, content type, body) of the answer to one ``add-checkpoint`` request."""
        try:
            request = WitnessRequest.from_bytes(body)
            origin = Note.from_bytes(request.note).text.split("\n", 1)[0]
        except MalformedError as exc:
            return 400, "text/plain", exc.message.encode()
        log = self.logs.get(origin)
        if log is None:
            return 404, "text/plain", f"unknown log {origin!r}".encode()
        now = self.clock()
        try:
            presented = open_checkpoint(request.note, log=log, now=now)  # W1
        except OstracaError as exc:
            return 403, "text/plain", exc.message.encode()
        with self._lock:
            latest = self.latest(origin, now)
            try:
                check_witness_request(latest=latest, request=request, presented=presented)
            except ConflictError:  # W3
                size = latest.checkpoint.size if latest is not None else 0
                return 409, SIZE_TYPE, f"{size}\n".encode()
            except (ProofError, OstracaError) as exc:  # W2, W4
                status = 400 if type(exc) is MalformedError else 422
                return status, "text/plain", exc.message.encode()
            state = self._state()
            state[origin] = base64.b64encode(request.note).decode("ascii")
            self._save(state)  # W5
        line = cosign_checkpoint(presented.checkpoint, signer=self.signer, now=now)
        return 200, "text/plain; charset=utf-8", line.line().encode()


def create_witness_app(witness: Witness) -> FastAPI:
    """The witness's HTTP service: ``POST /add-checkpoint`` and ``GET /key``."""
    app = FastAPI(title="Ostraca witness", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        status, media_type, body = witness.add_checkpoint(await request.body())
        return Response(body, status_code=status, media_type=media_type)

    @app.get("/key")
    def key() -> Response:
        return Response(witness.vkey + "\n", media_type="text/plain; charset=utf-8")

    return app


def _consistency(old: int, new: int) -> Callable[[NodeSource], list[bytes]]:
    return lambda node: consistency_proof(old, new, node)


class WitnessPool:
    """The witnesses a registry submits its checkpoints to (``OSTRACA_LOG_WITNESSES``)."""

    def __init__(self, urls: Sequence[str], *, timeout: float = 10.0) -> None:
        self.urls = [u.rstrip("/") for u in urls]
        self._sizes: dict[str, int] = {}
        self._http = httpx.Client(timeout=timeout)

    def __bool__(self) -> bool:
        return bool(self.urls)

    def cosign(self, session: Session, note: bytes) -> bytes:
        """``note`` with the cosignatures of every witness that gave one (stored in place)."""
        checkpoint = Checkpoint.from_text(Note.from_bytes(note).text)
        lines: list[NoteSignature] = []
        for url in self.urls:
            try:
                lines.extend(self._submit(session, url, note, checkpoint))
            except (httpx.HTTPError, OstracaError) as exc:
                _log.warning("witness %s did not cosign size %d: %s", url, checkpoint.size, exc)
        if not lines:
            return note
        cosigned = Note.from_bytes(note).with_signatures(*lines).to_bytes()
        replace_checkpoint(session, note, cosigned)
        return cosigned

    def _submit(
        self, session: Session, url: str, note: bytes, checkpoint: Checkpoint
    ) -> list[NoteSignature]:
        for _ in range(2):  # a 409 names the witness's size: one more try from there
            old = self._sizes.get(url, 0)
            proof: list[bytes] = []
            if 0 < old < checkpoint.size:
                proof = with_nodes(session, checkpoint.size, _consistency(old, checkpoint.size))
            body = WitnessRequest(old_size=old, proof=tuple(proof), note=note).to_bytes()
            response = self._http.post(f"{url}/add-checkpoint", content=body)
            if response.status_code == 409 and response.headers.get("content-type") == SIZE_TYPE:
                self._sizes[url] = int(response.text.strip())
                continue
            response.raise_for_status()
            self._sizes[url] = checkpoint.size
            return [NoteSignature.from_line(x) for x in response.text.split("\n") if x]
        return []
