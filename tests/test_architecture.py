"""The architecture, checked: imports run one way, the client and ``ostraca --help`` stay light,
the CLI's table of lazy commands matches the commands, and a missing extra is named.

protocol_spec ← server ← migrations;  protocol_spec ← client ← trainer ← cli;  cli → server.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer

from ostraca.cli import COMMANDS, app, load

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol_spec", "server", "client", "trainer", "cli", "migrations")
ALLOWED: dict[str, set[str]] = {
    "protocol_spec": set(),
    "server": {"protocol_spec"},
    "migrations": {"server", "protocol_spec"},
    "client": {"protocol_spec"},
    "trainer": {"client", "protocol_spec"},
    "cli": {"trainer", "client", "protocol_spec", "server"},
}
HEAVY = ("fastapi", "sqlalchemy", "uvicorn", "alembic", "psycopg", "torch", "starlette")


def _edges() -> set[tuple[str, str, str]]:
    """(importing package, imported package, file) for every ``ostraca.*`` import."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "ostraca" and len(parts) > 1 and parts[1] != package:
                        found.add((package, parts[1], str(path.relative_to(ROOT))))
                if isinstance(node, ast.ImportFrom) and node.level > 1:
                    found.add((package, f"relative import beyond {package}", str(path)))
    return found


def test_imports_run_one_way() -> None:
    bad = sorted(e for e in _edges() if e[1] not in ALLOWED[e[0]])
    assert bad == [], "imports against the one direction: " + json.dumps(bad)


def test_the_graph_is_not_vacuous() -> None:
    """The walk above sees the edges that must exist (so an empty scan cannot pass)."""
    seen = {(a, b) for a, b, _ in _edges()}
    assert {("server", "protocol_spec"), ("client", "protocol_spec"), ("trainer", "client")} <= (
        seen
    )
    assert {("cli", "client"), ("cli", "server"), ("migrations", "server")} <= seen


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_client_import_loads_no_server_and_no_torch() -> None:
    loaded = _modules_after("import ostraca.client")
    assert "ostraca.client" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []
    ours = {m.split(".")[1] for m in loaded if m.startswith("ostraca.")}
    assert ours == {"client"}  # its names load their modules on first use (PEP 562)
    named = _modules_after("from ostraca.client import publish, RegistryClient")
    assert {"ostraca.client.publishing", "ostraca.client.api"} <= named


def test_help_loads_only_typer() -> None:
    code = (
        "import contextlib, io\nfrom ostraca.cli import run\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert run(['--help']) == 0\nassert 'publish' in out.getvalue()"
    )
    loaded = _modules_after(code)
    ours = sorted(m for m in loaded if m.startswith("ostraca."))
    assert ours == ["ostraca.cli", "ostraca.cli.common"]
    assert sorted(m for m in loaded if m.split(".")[0] in (*HEAVY, "httpx", "pyarrow")) == []


def test_lazy_table_matches_the_commands() -> None:
    """Each listed command resolves to a real command of that name whose help starts with the
    line the root shows, and no role module has a command the root does not list."""
    listed = {c.name for c in COMMANDS}
    assert len(listed) == len(COMMANDS)
    for spec in COMMANDS:
        command = load(spec)
        assert command.name == spec.name
        real_help = " ".join((command.help or "").split())
        assert real_help.startswith(spec.help), (spec.name, real_help)
    for target in sorted({c.target for c in COMMANDS if not c.whole}):
        module, attr = target.split(":")
        holder = getattr(__import__(module, fromlist=[attr]), attr)
        if not isinstance(holder, typer.Typer):
            holder_app = typer.Typer()
            holder(holder_app)
            holder = holder_app
        names = {c.name or c.callback.__name__ for c in holder.registered_commands if c.callback}
        names |= {g.name for g in holder.registered_groups if g.name}
        assert names <= listed, (target, names - listed)
    assert isinstance(app, typer.Typer)


def test_missing_extra_is_one_line_naming_it() -> None:
    code = (
        "import sys\nsys.modules['fastapi'] = None\nsys.modules['uvicorn'] = None\n"
        "from ostraca.cli import run\nsys.exit(run(['server', 'run']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error [missing_extra]")
    assert "pip install 'ostraca[server]'" in lines[0]


@pytest.mark.parametrize("extra", ["server", "train"])
def test_lean_install_leaves_out_the_extras(extra: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split("[")[0].split(">")[0].split("=")[0].lower() for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    heavy = {
        "server": {"fastapi", "sqlalchemy", "uvicorn", "alembic", "psycopg"},
        "train": {"torch"},
    }
    assert base.isdisjoint(heavy[extra])
    named = {d.split("[")[0].split(">")[0].lower() for d in extras[extra]}
    assert heavy[extra] <= named
    assert any(extra in d for d in extras["all"])
