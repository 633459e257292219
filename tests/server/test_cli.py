from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ostraca.protocol_spec import MalformedError
from ostraca.server.cli import server_app
from ostraca.server.migrate import current_revision, head_revision


def test_migrate_command(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSTRACA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OSTRACA_DATABASE_URL", empty_database_url)
    runner = CliRunner()
    result = runner.invoke(server_app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert f"database at migration {head_revision()}" in result.output
    assert current_revision(empty_database_url) == head_revision()
    result = runner.invoke(server_app, ["migrate", "--downgrade-base"])
    assert result.exit_code == 0, result.output
    assert current_revision(empty_database_url) is None
    monkeypatch.setenv("OSTRACA_TOKEN_TTL_SECONDS", "5")
    result = runner.invoke(server_app, ["migrate"])
    # Invalid settings are one MalformedError (the root CLI prints it as one line, exit 1).
    assert isinstance(result.exception, MalformedError)
    assert "OSTRACA_TOKEN_TTL_SECONDS" in str(result.exception)
