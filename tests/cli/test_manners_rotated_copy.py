"""A pulled copy of a version signed before ``rotate-key``, granted with the publisher's new key
(SPEC 5.2 G2: a grant verifies along the rotation chain, which the researcher's trust store
verified), trains offline — through the installed ``ostraca`` entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ostraca.client.publishing import PublishResult

from ..client.client_helpers import Identity
from .test_exit_codes import DATASET, ostraca


def _ok(env: dict[str, str], *args: str) -> str:
    proc = ostraca(env, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("encrypt", [False, True], ids=["plaintext", "encrypted"])
def test_a_copy_granted_after_a_rotation_verifies_and_trains(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    tmp_path: Path,
    encrypt: bool,
) -> None:
    publish_table(encrypt=encrypt)  # version 1, signed by the publisher's first key
    _ok(researcher.env(), "show", DATASET)  # pins that key on first use
    rotated = json.loads(_ok(publisher.env(), "rotate-key", "--reason", "laptop lost", "--json"))
    assert rotated["old_key"] == publisher.keyid
    _ok(researcher.env(), "request", DATASET, "--purpose", "after the rotation", "--accept-terms")
    pending = json.loads(_ok(publisher.env(), "requests", "--status", "pending", "--json"))
    grant = json.loads(_ok(publisher.env(), "approve", pending["items"][0]["request_id"], "--json"))
    assert grant["publisher"] == rotated["new_key"]  # the new key grants what the old one signed

    copy = tmp_path / "copy"
    _ok(researcher.env(), "pull", DATASET, str(copy), "--quiet")
    # The pinned keys, with the retired one for what it signed before its rotation; the key
    # grants (encrypted) signed by the new key, the grant's signer.
    report = json.loads(_ok(researcher.env(), "verify", str(copy), "--json"))
    assert report["ok"] is True, report
    # The manifest by the key that signed it; the grant by its successor (the trust store's
    # chain), which the copy's grant check follows.
    old_key = publisher.key.public.b64
    tiny = ["--steps", "1", "--model-size", "toy", "--batch-size", "2", "--seq-len", "32"]
    trained = ostraca(
        researcher.env(), "train", "--from-dir", str(copy), "--publisher-key", old_key,
        "--out", str(tmp_path / "run"), "--text-column", "text", *tiny,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "not checked" not in trained.stdout + trained.stderr
