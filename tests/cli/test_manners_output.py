"""CLI manners (issue 18), through the installed ``ostraca`` entry point in a subprocess:
``--json`` on every command that reports data, tables that wrap instead of cutting, required
options marked, sizes that say how to fix them, binary units and "1 shard"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ostraca.client.publishing import PublishResult

from ..client.client_helpers import Identity, sample_table
from ..client.stream_helpers import grant_access
from .test_exit_codes import DATASET, error_line, ostraca

LONG = "acme/" + "a-dataset-whose-name-is-much-longer-than-any-column-of-a-table-can-be"


def _json(env: dict[str, str], *args: str) -> object:
    proc = ostraca(env, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_json_on_pull_verify_stream_and_cache(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    tmp_path: Path,
) -> None:
    result = publish_table(sample_table(50))
    grant_access(publisher.client, researcher.client, DATASET)
    env = researcher.env()
    copy = tmp_path / "copy"
    pulled = _json(env, "pull", DATASET, str(copy))
    assert pulled == {
        "dataset": DATASET,
        "version": 1,
        "manifest_digest": result.digest,
        "grant_id": pulled["grant_id"],  # type: ignore[index]
        "directory": str(copy),
        "shards": len(result.shards),
        "bytes": result.total_bytes,
        "downloaded_bytes": result.total_bytes,
    }
    report = _json(env, "verify", str(copy))
    assert isinstance(report, dict)
    assert report["ok"] is True
    assert report["dataset"] == DATASET
    assert report["access_ended"] is None
    assert {c["what"] for c in report["checks"]} >= {"manifest signature", "grant", "revocation"}
    assert all(c["ok"] for c in report["checks"])

    rows = ostraca(env, "stream", DATASET, "--head", "3", "--json")
    assert rows.returncode == 0, rows.stderr
    lines = rows.stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2]  # one JSON object a line

    info = _json(env, "cache", "info")
    assert isinstance(info, dict)
    assert {"root", "blobs", "bytes", "budget", "partial_bytes"} <= set(info)
    freed = _json(env, "cache", "clear")
    assert freed == {"freed_bytes": info["bytes"]}

    # A failed check still prints the report, then exits 1.
    (copy / "grant.json").write_text("{}")
    failed = ostraca(env, "verify", str(copy), "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["ok"] is False


def test_tables_fold_long_names_at_the_terminal_width(
    publish_table: Callable[..., PublishResult], researcher: Identity
) -> None:
    publish_table(sample_table(10), dataset=LONG)
    listed = ostraca({**researcher.env(), "COLUMNS": "60"}, "datasets")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert "…" not in listed.stdout
    # The name's column, top to bottom: the whole name, folded over several lines.
    first_cells = [line.split("│")[1].strip() for line in lines if line.count("│") > 2]
    assert LONG in "".join(first_cells)
    assert len([c for c in first_cells if c]) > 2  # the header, and the name on 2+ lines


def test_required_terms_are_marked_and_a_missing_one_is_a_usage_error(tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path), "COLUMNS": "200"}
    helped = ostraca(env, "publish", "--help")
    assert helped.returncode == 0
    terms = next(line for line in helped.stdout.splitlines() if "--terms " in line)
    assert "[required, or --terms-file]" in terms
    assert "[required]" in next(line for line in helped.stdout.splitlines() if "--dataset" in line)
    missing = ostraca(env, "publish", "x.csv", "--dataset", "acme/x", "--license", "MIT")
    assert missing.returncode == 2
    line = error_line(missing)
    assert line.startswith("error [usage] missing terms: give exactly one of --terms")
    assert line.endswith("(see `ostraca publish --help`)")
    assert missing.stderr.strip() == line  # one line, no traceback


def test_a_shard_smaller_than_a_chunk_names_the_chunk_size_to_give(tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path)}
    args = ["publish", "x.csv", "--dataset", "acme/x", "--license", "MIT", "--terms", "t"]
    small = ostraca(env, *args, "--shard-size", "1MiB")
    assert small.returncode == 2
    line = error_line(small)
    assert "1MiB is smaller than the chunk size (2.0 MiB)" in line
    assert "--chunk-size 1MiB" in line
    odd = ostraca(env, *args, "--shard-size", "300KiB")
    assert "--chunk-size 256KiB" in error_line(odd)


def test_binary_units_and_one_shard(
    publish_table: Callable[..., PublishResult],
    publisher: Identity,
    researcher: Identity,
    tmp_path: Path,
) -> None:
    result = publish_table(sample_table(20))
    assert len(result.shards) == 1
    grant_access(publisher.client, researcher.client, DATASET)
    env = researcher.env()
    pulled = ostraca(env, "pull", DATASET, str(tmp_path / "copy"), "--quiet")
    assert pulled.returncode == 0, pulled.stderr
    summary = " ".join(pulled.stdout.split())
    assert f"pulled {DATASET}@1: 1 shard, " in summary
    assert "KiB (" in summary
    assert " MB" not in summary
    assert " kB" not in summary
    assert " bytes" not in summary
    info = ostraca(env, "cache", "info")
    assert "size " in info.stdout
    assert " B\n" in info.stdout or "iB\n" in info.stdout
    helped = ostraca({**env, "COLUMNS": "200"}, "publish", "--help")
    assert "MiB = 1024²" in helped.stdout


def test_an_unknown_id_says_where_to_find_the_right_one(publisher: Identity) -> None:
    env = publisher.env()
    approve = ostraca(env, "approve", "ffff0000")
    assert approve.returncode == 1
    assert error_line(approve) == (
        "error [not_found] no pending request of yours has an id starting with ffff0000 "
        "(`ostraca requests --status pending` lists them; --json shows the full ids)"
    )
    revoke = ostraca(env, "revoke", "xyz")
    assert error_line(revoke).endswith("(`ostraca grants` lists them; --json shows the full ids)")


REPORTING = (
    "datasets", "show", "request", "requests", "grants", "namespace create", "namespace show",
    "publish", "approve", "deny", "revoke", "audit", "rekey", "pull", "verify", "stream",
    "cache info", "cache clear",
)  # fmt: skip


def test_every_command_that_reports_data_takes_json(tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path), "COLUMNS": "200"}
    lacking = [c for c in REPORTING if "--json" not in ostraca(env, *c.split(), "--help").stdout]
    assert lacking == []
