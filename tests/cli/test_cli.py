"""The ``ostraca`` CLI, in process, against a real registry: the whole publish → request →
approve → revoke flow with ``--json``, and failures as one clear line with exit status 1."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from ostraca.cli import run
from ostraca.cli.publisher import parse_expiry, parse_versions
from ostraca.protocol_spec import DatasetManifest, MalformedError, RevokedError, utc_now

from ..client.client_helpers import ENV_VARS, TERMS, Identity, sample_table


class Cli:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    def __call__(self, env: dict[str, str], *args: str) -> tuple[int, str, str]:
        for var in ENV_VARS:
            self.monkeypatch.delenv(var, raising=False)
        for k, v in env.items():
            self.monkeypatch.setenv(k, v)
        self.capsys.readouterr()
        code = run(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, env: dict[str, str], *args: str) -> Any:
        code, out, err = self(env, *args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


def _one_error_line(code: int, out: str, err: str, *, status: int = 1) -> str:
    """The failure's single line (notices such as trust-on-first-use may precede it), and the
    exit status: 1 for an error, 2 for a usage error."""
    assert code == status
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error ")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    return errors[0]


def test_keygen_register_login_whoami(cli: Cli, registry: str, tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path / "home"), "OSTRACA_REGISTRY": registry}
    code, out, _ = cli(env, "keygen", "--name", "Acme Lab", "--kind", "institution")
    assert code == 0
    assert "key id" in out
    me = cli.json(env, "register", "--affiliation", "Acme University")
    assert (me["name"], me["kind"], me["affiliation"]) == (
        "Acme Lab",
        "institution",
        "Acme University",
    )
    token = cli.json(env, "login")
    assert token["principal"]["keyid"] == me["keyid"]
    assert cli.json(env, "whoami")["keyid"] == me["keyid"]
    assert cli.json(env, "namespace", "create", "acme") == {"name": "acme", "owner": me["keyid"]}
    keys = cli.json(env, "namespace", "show", "acme")["keys"]
    assert [k["keyid"] for k in keys] == [me["keyid"]]


def test_publish_request_approve_revoke_flow(
    cli: Cli, publisher: Identity, researcher: Identity, tmp_path: Path
) -> None:
    pub, res = publisher.env(), researcher.env()
    table = sample_table(3000)
    pq.write_table(table, tmp_path / "books.parquet")
    (tmp_path / "terms.txt").write_text(TERMS)
    published = cli.json(
        pub,
        "publish",
        str(tmp_path / "books.parquet"),
        "--dataset",
        "acme/books",
        "--license",
        "CC-BY-4.0",
        "--terms-file",
        str(tmp_path / "terms.txt"),
        "--description",
        "Public-domain books",
        "--shard-size",
        "128KiB",
        "--chunk-size",
        "64KiB",
        "--compression",
        "lz4",
    )
    assert (published["dataset"], published["version"], published["total_rows"]) == (
        "acme/books",
        1,
        3000,
    )
    listing = cli.json(res, "datasets", "--search", "books")
    assert [d["dataset"] for d in listing["items"]] == ["acme/books"]
    shown = cli.json(res, "show", "acme/books@1")
    assert shown["manifest"]["digest"] == published["digest"]
    assert shown["manifest"]["signed_by"] == publisher.keyid
    assert shown["terms"] == TERMS
    assert [c["name"] for c in shown["manifest"]["columns"]] == ["id", "text", "score"]
    code, out, _ = cli(res, "show", "acme/books")
    assert code == 0
    assert "signature verified" in out
    assert "CC-BY-4.0" in out

    # Without --accept-terms and without a terminal to ask: refused, with the way forward.
    line = _one_error_line(*cli(res, "request", "acme/books", "--purpose", "LM pretraining"))
    assert line.startswith("error [terms_not_accepted]")
    assert "--accept-terms" in line
    assert cli.json(pub, "requests")["items"] == []

    req = cli.json(res, "request", "acme/books", "--purpose", "LM pretraining", "--accept-terms")
    assert req["status"] == "pending"
    inbox = cli.json(pub, "requests", "--dataset", "acme/books", "--status", "pending")
    assert [r["request_id"] for r in inbox["items"]] == [req["request_id"]]
    assert inbox["items"][0]["purpose"] == "LM pretraining"

    grant = cli.json(
        pub,
        "approve",
        req["request_id"][:10],  # a unique prefix, as the tables show ids
        "--expires",
        "30d",
        "--versions",
        "1..",
        "--columns",
        "id,text",
    )
    assert (grant["grantee"], grant["min_version"], grant["max_version"]) == (
        researcher.keyid,
        1,
        None,
    )
    assert grant["columns"] == ["id", "text"]
    assert [g["grant_id"] for g in cli.json(res, "grants")["items"]] == [grant["grant_id"]]
    shard = published_shard(researcher, "acme/books")
    assert researcher.client.get_blob(shard, dataset="acme/books")

    line = _one_error_line(*cli(pub, "revoke", "ffff0000", "--reason", "typo"))
    assert line.startswith("error [not_found] no grant of yours has an id starting with ffff0000")
    revoked = cli.json(pub, "revoke", grant["grant_id"][:8] + "…", "--reason", "study over")
    assert revoked["grant_id"] == grant["grant_id"]
    listed = cli.json(pub, "grants", "--dataset", "acme/books")["items"]
    assert [(g["grant_id"], g["revoked"]) for g in listed] == [(grant["grant_id"], True)]
    with pytest.raises(RevokedError):
        researcher.client.get_blob(shard, dataset="acme/books")

    second = cli.json(res, "request", "acme/books", "--purpose", "again", "--accept-terms")
    denied = cli.json(pub, "deny", second["request_id"], "--reason", "no")
    assert denied["status"] == "denied"

    actions = [e["action"] for e in cli.json(pub, "audit", "acme/books")["items"]]
    for action in ("publish", "request", "grant", "read", "revoke", "read_refused", "deny"):
        assert action in actions
    code, out, _ = cli(pub, "audit", "acme/books")
    assert code == 0
    assert "revoke" in out


def published_shard(ident: Identity, dataset: str) -> str:
    env = ident.client.get_manifest_envelope(dataset)
    return DatasetManifest.from_json_obj(json.loads(env.payload)).shards[0].sha256


def test_failures_print_one_line_and_exit_non_zero(
    cli: Cli, registry: str, researcher: Identity, publish_table: Any, tmp_path: Path
) -> None:
    # No key.
    env = {"OSTRACA_HOME": str(tmp_path / "empty"), "OSTRACA_REGISTRY": registry}
    line = _one_error_line(*cli(env, "whoami"))
    assert line.startswith("error [key_file] no key file at ")
    assert "ostraca keygen" in line

    # Wrong registry URL.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    line = _one_error_line(
        *cli(researcher.env(), "--registry", f"http://127.0.0.1:{port}", "datasets")
    )
    assert line.startswith("error [unavailable] cannot reach the registry at http://127.0.0.1:")
    assert "ostraca server run" in line

    # Missing grant: the hint is the exact request command.
    publish_table()
    line = _one_error_line(*cli(researcher.env(), "pull", "acme/books", str(tmp_path / "copy")))
    assert line.startswith("error [access_denied]")
    assert "ostraca request acme/books --purpose" in line

    # Publisher-only commands, unknown datasets, bad arguments.
    line = _one_error_line(*cli(researcher.env(), "audit", "acme/books"))
    assert line.startswith("error [access_denied]")
    line = _one_error_line(*cli(researcher.env(), "show", "acme/nope"))
    assert line.startswith("error [not_found]")
    line = _one_error_line(*cli(researcher.env(), "show", "Not A Name"))
    assert line.startswith("error [malformed] invalid dataset name")
    line = _one_error_line(*cli(researcher.env(), "approve", "abc", "--expires", "soon"))
    assert line.startswith("error [malformed] bad --expires")
    line = _one_error_line(*cli(researcher.env(), "whoami", "--no-such-flag"), status=2)
    assert line.startswith("error [usage]")
    line = _one_error_line(
        *cli(researcher.env(), "publish", "x.csv", "--dataset", "acme/x", "--license", "MIT"),
        status=2,
    )
    assert "exactly one of --terms" in line


def test_help_and_config(cli: Cli, tmp_path: Path) -> None:
    env = {"OSTRACA_HOME": str(tmp_path)}
    code, out, _ = cli(env, "--help")
    assert code == 0
    for command in ("publish", "request", "approve", "revoke", "audit", "config", "pull"):
        assert command in out
    code, out, _ = cli(env, "approve", "--help")
    assert code == 0
    assert "--expires" in out
    code, _, _ = cli(env, "config", "set", "registry", "https://registry.example")
    assert code == 0
    shown = cli.json(env, "config", "show")
    assert shown["registry"] == "https://registry.example"
    assert shown["home"] == str(tmp_path)
    assert (
        cli.json({**env, "OSTRACA_REGISTRY": "http://env.example"}, "config", "show")["registry"]
        == "http://env.example"
    )
    assert (
        cli.json(env, "--registry", "http://flag.example", "config", "show")["registry"]
        == "http://flag.example"
    )
    line = _one_error_line(*cli(env, "config", "set", "colour", "blue"))
    assert line.startswith("error [malformed] unknown configuration key")


def test_expiry_and_version_ranges() -> None:
    now = utc_now()
    assert (parse_expiry("90d", now=now) - now).days == 90
    assert (parse_expiry("12h", now=now) - now).total_seconds() == 12 * 3600
    assert parse_expiry("2999-01-31", now=now).year == 2999
    for bad in ("0d", "yesterday", "2000-01-01"):
        with pytest.raises(MalformedError):
            parse_expiry(bad, now=now)
    assert parse_versions("3") == (3, 3)
    assert parse_versions("1..3") == (1, 3)
    assert parse_versions("2..") == (2, None)
    assert parse_versions("..4") == (1, 4)
    for bad in ("", "3..1", "0", "a..b"):
        with pytest.raises(MalformedError):
            parse_versions(bad)
