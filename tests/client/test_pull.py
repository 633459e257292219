"""Pull a version to a directory, re-verify it (offline, and asking the registry about
revocation when it can), detect a flipped byte; the progress callback counts only bytes that
came over the network."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from ostraca.cli import app as cli_app
from ostraca.client.local import open_pulled
from ostraca.client.publishing import PublishResult
from ostraca.client.pull import pull, verify_copy
from ostraca.protocol_spec import RevokedError

from ..cli.test_exit_codes import error_line, ostraca
from .client_helpers import Identity
from .stream_helpers import IdentityLike, flip_byte, grant_access

DATASET = "acme/books"
CHUNK = 64 * 1024


def _table(rows: int = 4000) -> pa.Table:
    text = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in range(rows)]
    return pa.table({"id": list(range(rows)), "text": text})


@pytest.fixture
def pulled(
    publish_table: Callable[..., PublishResult],
    publisher: IdentityLike,
    researcher: IdentityLike,
    tmp_path: Path,
) -> tuple[Path, PublishResult, pa.Table]:
    table = _table()
    result = publish_table(
        table, dataset=DATASET, shard_bytes=4 * CHUNK, chunk_bytes=CHUNK, compression="none"
    )
    grant_access(publisher.client, researcher.client, DATASET)
    dest = tmp_path / "copy"
    pulled = pull(DATASET, dest, client=researcher.client)
    assert pulled.shards == len(result.shards)
    assert pulled.manifest_digest == result.digest
    assert pulled.downloaded_bytes == result.total_bytes
    return dest, result, table


def test_pull_writes_a_verifiable_copy(
    pulled: tuple[Path, PublishResult, pa.Table], researcher: IdentityLike
) -> None:
    dest, result, table = pulled
    for s in result.shards:
        assert hashlib.sha256((dest / "shards" / s.sha256).read_bytes()).hexdigest() == s.sha256
        assert hashlib.sha256((dest / "chunks" / s.chunks).read_bytes()).hexdigest() == s.chunks
    # The copy holds the sealed shards as published (no row's text); reading it opens them.
    mark = table.column("text")[1].as_py().encode()
    assert not any(mark in (dest / "shards" / s.sha256).read_bytes() for s in result.shards)
    with open_pulled(dest, home=researcher.home) as local:
        assert local.to_table().equals(table)
    report = verify_copy(dest, home=researcher.home)
    assert report.ok, report.failures
    assert report.dataset == DATASET
    assert len(report.checks) == 2 + len(result.shards)
    # Pulling again downloads nothing (resume / already there).
    again = pull(DATASET, dest, client=researcher.client)
    assert again.downloaded_bytes == 0


def _cli() -> typer.Typer:
    return cli_app


def test_cli_verify_exit_status(
    pulled: tuple[Path, PublishResult, pa.Table], researcher: IdentityLike
) -> None:
    dest, result, _ = pulled
    runner = CliRunner()
    env = {"OSTRACA_HOME": str(researcher.home)}
    ok = runner.invoke(_cli(), ["verify", str(dest)], env=env)
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output
    victim = result.shards[-1]
    flip_byte(dest / "shards" / victim.sha256, victim.bytes // 2)
    bad = runner.invoke(_cli(), ["verify", str(dest)], env=env)
    assert bad.exit_code == 1
    assert "FAIL" in bad.output
    assert victim.sha256[:16] in bad.output
    report = verify_copy(dest, home=researcher.home)
    assert [c.what for c in report.failures] == [
        f"shard {len(result.shards) - 1} {victim.sha256[:16]}…"
    ]


def test_verify_detects_a_tampered_manifest(
    pulled: tuple[Path, PublishResult, pa.Table], researcher: IdentityLike
) -> None:
    dest, _, _ = pulled
    raw = (dest / "manifest.json").read_bytes()
    (dest / "manifest.json").write_bytes(raw.replace(b'"payload":"', b'"payload":"A', 1))
    report = verify_copy(dest, home=researcher.home)
    assert not report.ok
    assert report.failures[0].what == "manifest signature"


def test_cli_stream_head_json(
    pulled: tuple[Path, PublishResult, pa.Table], researcher: IdentityLike
) -> None:
    runner = CliRunner()
    env = {"OSTRACA_HOME": str(researcher.home), "OSTRACA_REGISTRY": researcher.config.registry}
    out = runner.invoke(
        _cli(), ["stream", DATASET, "--head", "3", "--columns", "id", "--json"], env=env
    )
    assert out.exit_code == 0, out.output
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines == ['{"id": 0}', '{"id": 1}', '{"id": 2}']


def test_verify_checks_revocation_online_and_exits_3_when_revoked(
    pulled: tuple[Path, PublishResult, pa.Table], publisher: Identity, researcher: Identity
) -> None:
    dest, _, _ = pulled
    report = verify_copy(dest, home=researcher.home, client=researcher.client)
    assert report.ok, report.failures
    assert report.revocation == f"revocation checked with {researcher.config.registry}"
    assert "revocation" in [c.what for c in report.checks]
    (grant,) = publisher.client.list_grants(dataset=DATASET)
    publisher.client.revoke(grant.grant_id, reason="project ended")
    report = verify_copy(dest, home=researcher.home, client=researcher.client)
    assert isinstance(report.access_ended, RevokedError)
    assert [c.what for c in report.failures] == ["revocation"]
    revoked = ostraca(researcher.env(), "verify", str(dest))
    assert revoked.returncode == 3, revoked.stderr
    assert "FAIL revocation" in revoked.stdout
    assert error_line(revoked).startswith("error [revoked]")


def test_verify_says_when_revocation_was_not_checked(
    pulled: tuple[Path, PublishResult, pa.Table], researcher: Identity
) -> None:
    dest, _, _ = pulled
    unreachable = {**researcher.env(), "OSTRACA_REGISTRY": "http://127.0.0.1:9"}
    for args in (("verify", str(dest)), ("verify", "--offline", str(dest))):
        proc = ostraca(unreachable, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "revocation not checked (offline)" in proc.stdout


def test_pull_progress_counts_only_bytes_that_came_over_the_network(
    pulled: tuple[Path, PublishResult, pa.Table], researcher: IdentityLike
) -> None:
    dest, result, _ = pulled
    seen: list[tuple[int, int]] = []

    def on_progress(transferred: int, present: int) -> None:
        seen.append((transferred, present))

    pull(DATASET, dest, client=researcher.client, on_progress=on_progress)
    assert seen == [(0, s.bytes) for s in result.shards]  # all here: nothing transferred
    # A shard half downloaded: its verified prefix is present, only the rest is transferred.
    victim = result.shards[0]
    shard = dest / "shards" / victim.sha256
    (dest / "shards" / f".{victim.sha256}.part").write_bytes(shard.read_bytes()[: 2 * CHUNK + 5])
    shard.unlink()
    seen.clear()
    pull(DATASET, dest, client=researcher.client, on_progress=on_progress)
    assert seen[0] == (victim.bytes - 2 * CHUNK, 2 * CHUNK)
    assert seen[1:] == [(0, s.bytes) for s in result.shards[1:]]
