"""``--json`` on the identity and trainer commands (issue 18, CLI manners), through the installed
``ostraca`` entry point in a subprocess: stdout holds one JSON document and nothing else (logs
and progress go to stderr), and a failed verification still prints its JSON, then exits 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ostraca.client.publishing import PublishResult
from ostraca.trainer.checkpoint import CHECKPOINT_FILE

from ..client.client_helpers import Identity, sample_table
from ..client.stream_helpers import grant_access
from .test_exit_codes import DATASET, ostraca

TINY = ["--model-size", "toy", "--batch-size", "2", "--seq-len", "32", "--device", "cpu"]
ONE_SHARD = "acme/one"


def _json(env: dict[str, str], *args: str) -> Any:
    proc = ostraca(env, *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)  # the whole of stdout: one document


def test_keygen_json_names_the_key_and_its_files(tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path)}
    made = _json(env, "keygen", "--name", "ada", "--affiliation", "Lab")
    public = json.loads((tmp_path / "identity.pub.json").read_text())
    assert made == {
        "keyid": public["keyid"],
        "public": public["public"],
        "private_path": str(tmp_path / "identity.pem"),
        "public_path": str(tmp_path / "identity.pub.json"),
        "name": "ada",
        "kind": "researcher",
        "affiliation": "Lab",
    }


def test_train_generate_attest_and_verify_print_json(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    tmp_path: Path,
) -> None:
    small = {"shard_bytes": 64 * 1024, "chunk_bytes": 64 * 1024, "compression": "none"}
    published = publish_table(sample_table(1500), **small)
    shards = len(published.shards)
    assert shards >= 2
    grant_access(publisher.client, researcher.client, DATASET)
    env = researcher.env()
    copy, run = tmp_path / "copy", tmp_path / "run"
    assert ostraca(env, "pull", DATASET, str(copy), "--quiet").returncode == 0

    held_out = ["--eval-shards", "1", "--eval-every", "1"]
    args = ["train", "--from-dir", str(copy), "--out", str(run), "--steps", "1", *TINY, *held_out]
    trained = _json(env, *args)
    assert trained["step"] == trained["steps"] == 1
    assert trained["stopped"] is None
    assert trained["checkpoint"] == str(run / CHECKPOINT_FILE)
    assert Path(trained["checkpoint"]).is_file()
    assert trained["tokens"] > 0
    assert trained["tokens_per_s"] > 0
    assert trained["held_out"]["step"] == 1
    assert trained["held_out"]["shards"] == [shards - 1]  # the last shard, never trained on
    assert trained["held_out"]["loss_per_byte"] > 0

    sample = _json(env, "generate", str(run), "--prompt", "row ", "--max-tokens", "8")
    assert sample["prompt"] == "row "
    assert isinstance(sample["completion"], str)
    assert (sample["run"], sample["seed"]) == (str(run), 0)

    attested = _json(env, "attest", str(run))
    assert attested["attestation"] == str(run / "attestation.json")
    assert attested["trainer"] == researcher.keyid
    assert (attested["steps"], attested["tokens"]) == (1, trained["tokens"])
    assert [d["dataset"] for d in attested["datasets"]] == [DATASET]

    verified = _json(env, "verify-attestation", str(run))
    assert verified == {"ok": True, **attested}  # the same id, the same statement

    with (run / CHECKPOINT_FILE).open("ab") as checkpoint:
        checkpoint.write(b"tampered")
    failed = ostraca(env, "verify-attestation", str(run), "--json")
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert report["ok"] is False
    assert report["attestation"] == attested["attestation"]
    assert report["error"]["code"]
    assert failed.stderr.count("error [") == 1  # the one line, on stderr

    one = publish_table(sample_table(20), dataset=ONE_SHARD)
    shown = ostraca(env, "show", ONE_SHARD)
    assert shown.returncode == 0, shown.stderr
    assert "20 rows, 1 shard, " in shown.stdout
    assert "  20 rows  " in shown.stdout  # its line under versions

    out = tmp_path / "one.croissant.json"
    wrote = _json(env, "croissant", ONE_SHARD, "--output", str(out))
    assert wrote == {
        "output": str(out),
        "dataset": ONE_SHARD,
        "version": 1,
        "manifest_digest": one.digest,
        "bytes": out.stat().st_size,
    }
    document = ostraca(env, "croissant", ONE_SHARD)  # without --output: the document is the JSON
    assert json.loads(document.stdout) == json.loads(out.read_bytes())


def test_the_trainer_and_identity_commands_take_json(tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path), "COLUMNS": "200"}
    commands = (
        "keygen", "train", "generate", "attest", "verify-attestation", "croissant",
        "log verify", "log watch",
    )  # fmt: skip
    lacking = [c for c in commands if "--json" not in ostraca(env, *c.split(), "--help").stdout]
    assert lacking == []
