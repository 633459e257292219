"""Every command family's failures, through the installed ``ostraca`` entry point in a
subprocess (not CliRunner on a bare app): the exit status and the one line a script sees.

0 ok · 1 error · 2 usage · 3 access revoked or expired · 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ostraca.client.publishing import PublishResult
from ostraca.client.pull import pull
from ostraca.client.trust import TrustStore
from ostraca.protocol_spec import SigningKey

from ..client.client_helpers import TERMS, Identity
from ..client.stream_helpers import flip_byte, grant_access

OSTRACA = str(Path(sys.executable).with_name("ostraca"))
DATASET = "acme/books"


def ostraca(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OSTRACA_")}
    full.update(env)
    return subprocess.run(
        [OSTRACA, *args], env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_success_and_usage(tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path)}
    assert ostraca(env, "--help").returncode == 0
    assert ostraca(env, "keygen", "--name", "x").returncode == 0
    bad_flag = ostraca(env, "whoami", "--no-such-flag")
    assert bad_flag.returncode == 2
    assert error_line(bad_flag).startswith("error [usage]")
    assert ostraca(env, "no-such-command").returncode == 2
    missing_arg = ostraca(env, "show")
    assert missing_arg.returncode == 2


def test_identity_and_publisher_failures(
    tmp_path: Path, registry: str, researcher: Identity
) -> None:
    no_key = ostraca(
        {"OSTRACA_HOME": str(tmp_path / "empty"), "OSTRACA_REGISTRY": registry}, "whoami"
    )
    assert no_key.returncode == 1
    assert error_line(no_key).startswith("error [key_file]")
    not_owner = ostraca(researcher.env(), "audit", DATASET)
    assert not_owner.returncode == 1
    assert error_line(not_owner).startswith("error [")


def test_verify_of_a_tampered_copy_exits_1(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    tmp_path: Path,
) -> None:
    result = publish_table()
    grant_access(publisher.client, researcher.client, DATASET)
    dest = tmp_path / "copy"
    pull(DATASET, dest, client=researcher.client)
    assert ostraca(researcher.env(), "verify", str(dest)).returncode == 0
    victim = result.shards[0]
    flip_byte(dest / "shards" / victim.sha256, victim.bytes // 2)
    tampered = ostraca(researcher.env(), "verify", str(dest))
    assert tampered.returncode == 1
    assert "FAIL" in tampered.stdout


def test_revoked_access_exits_3(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> None:
    publish_table()
    grant = grant_access(publisher.client, researcher.client, DATASET)
    assert ostraca(researcher.env(), "stream", DATASET, "--head", "1").returncode == 0
    publisher.client.revoke(grant.grant_id, reason="test")
    revoked = ostraca(researcher.env(), "stream", DATASET, "--head", "1")
    assert revoked.returncode == 3, revoked.stderr
    assert error_line(revoked).startswith("error [revoked]")


def test_train_without_a_grant_and_attestation_with_a_wrong_key_exit_1(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    tmp_path: Path,
) -> None:
    publish_table()
    run = str(tmp_path / "run")
    tiny = ["--steps", "2", "--model-size", "toy", "--batch-size", "2", "--seq-len", "32"]
    no_grant = ostraca(researcher.env(), "train", "--dataset", DATASET, "--out", run, *tiny)
    assert no_grant.returncode == 1, no_grant.stderr
    assert error_line(no_grant).startswith("error [access_denied]")
    grant_access(publisher.client, researcher.client, DATASET)
    trained = ostraca(
        researcher.env(), "train", "--dataset", DATASET, "--out", run, "--text-column", "text",
        *tiny,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert ostraca(researcher.env(), "attest", run).returncode == 0
    assert ostraca(researcher.env(), "verify-attestation", run).returncode == 0
    wrong = ostraca(
        researcher.env(),
        "verify-attestation",
        run,
        "--trainer-key",
        SigningKey.generate().public.b64,
    )
    assert wrong.returncode == 1, wrong.stderr


def test_show_verifies_against_the_pinned_key(
    publish_table: Callable[..., PublishResult], researcher: Identity
) -> None:
    """A registry that offers another key than the one pinned for the namespace: ``show``
    refuses, as ``stream`` does, instead of printing "signature verified"."""
    publish_table()
    assert ostraca(researcher.env(), "show", DATASET).returncode == 0  # pins on first use
    other = SigningKey.generate().public
    TrustStore(researcher.home).pin("acme", {other.keyid: other}, source="test")
    refused = ostraca(researcher.env(), "show", DATASET)
    assert refused.returncode == 1, refused.stdout
    assert "signature verified" not in refused.stdout
    assert error_line(refused).startswith("error [untrusted_key]")


def test_server_that_cannot_start_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"OSTRACA_DATA_DIR": str(tmp_path / "data")}
        proc = ostraca(env, "server", "run", "--port", str(port))
    assert proc.returncode != 0, proc.stderr


@pytest.mark.parametrize(
    ("env", "starts"),
    [
        (
            {"OSTRACA_DATABASE_URL": "postgresql://ostraca_test:wrong@127.0.0.1:5432/x"},
            "error [unavailable] cannot use the database at postgresql+psycopg://ostraca_test:***@",
        ),
        (
            {"OSTRACA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/db"},
            "error [unavailable] cannot use the database at",
        ),
        ({"OSTRACA_DATABASE_URL": "mysql://a@b/c"}, "error [malformed] invalid settings: "),
        (
            {"OSTRACA_TOKEN_TTL_SECONDS": "soon"},
            "error [malformed] invalid settings: OSTRACA_TOKEN",
        ),
    ],
)
def test_server_startup_errors_are_one_line(
    env: dict[str, str], starts: str, tmp_path: Path
) -> None:
    """A bad database URL, a wrong password or an unreachable database: one line, exit 1, the
    password never printed."""
    for command in (["server", "migrate"], ["server", "run", "--port", "1"]):
        proc = ostraca({**env, "OSTRACA_DATA_DIR": str(tmp_path)}, *command)
        assert proc.returncode == 1, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(starts), lines[0]
        assert "wrong" not in lines[0]


def test_ctrl_c_during_publish_exits_130_with_how_to_resume(
    tmp_path: Path, publisher: Identity
) -> None:
    path = tmp_path / "big.parquet"
    rows = 1_500_000  # ~150 MB of text: publishing takes several seconds on 2 cores
    pq.write_table(
        pa.table({"id": range(rows), "text": [f"row {i} " * 12 for i in range(rows)]}), path
    )
    args = [
        OSTRACA, "publish", str(path), "--dataset", "acme/big", "--license", "MIT",
        "--terms", TERMS, "--shard-size", "1MiB", "--chunk-size", "256KiB",
    ]  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OSTRACA_")}}
    env.update(publisher.env())
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # Interrupt once the first shard is staged: publishing is then under way, far from done.
    staging = publisher.home / "staging"
    deadline = time.monotonic() + 60
    while not any(p.is_file() for p in staging.rglob("*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "publish staged nothing in 60 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    line = [ln for ln in err.splitlines() if ln.startswith("error ")]
    assert len(line) == 1, err
    assert line[0].startswith("error [interrupted]")
    assert "again to resume" in line[0]
