"""CLI manners: global options before or after the command, shell completion that knows the
commands' own options."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from ostraca.cli import hoist_global_options

from ..client.client_helpers import Identity
from .test_exit_codes import OSTRACA, ostraca


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["datasets", "--registry", "U"], ["--registry", "U", "datasets"]),
        (["datasets", "--registry=U", "--json"], ["--registry=U", "datasets", "--json"]),
        (["--registry", "U", "datasets"], ["--registry", "U", "datasets"]),
        (
            ["pull", "a/b", "d", "--identity", "k.pem", "--registry", "U"],
            ["--identity", "k.pem", "--registry", "U", "pull", "a/b", "d"],
        ),
        (["stream", "a/b", "--", "--registry", "U"], ["stream", "a/b", "--", "--registry", "U"]),
    ],
)
def test_global_options_move_in_front(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


def test_registry_after_the_command(researcher: Identity, tmp_path: Path) -> None:
    """``--registry`` after ``datasets`` is honoured: a dead URL there makes it fail, the live
    one makes it work (the environment names neither)."""
    env = {"OSTRACA_HOME": str(researcher.home)}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    refused = ostraca(env, "datasets", "--json", "--registry", dead)
    assert refused.returncode == 1
    assert "cannot reach the registry" in refused.stderr
    ok = ostraca(env, "datasets", "--registry", researcher.config.registry, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["items"] == []


def _complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_OSTRACA_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    out = subprocess.run([OSTRACA], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_shell_completion() -> None:
    assert "publish" in _complete("ostraca pub")
    assert "--shard-size" in _complete("ostraca publish --sh")
    # The script `--install-completion` installs (asked for by name: `--show-completion` detects
    # the shell from the parent processes, which a test run may not have).
    script = subprocess.run(
        [OSTRACA],
        env={**os.environ, "_OSTRACA_COMPLETE": "source_bash"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert "_ostraca_completion" in script.stdout
    assert "complete -o default -F _ostraca_completion ostraca" in script.stdout
