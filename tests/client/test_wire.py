"""The read limits of the client's configuration (ReadLimits) and the transport that applies
them: where they come from, what is refused, and error answers capped like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ostraca.client.config import DEFAULT_LIMITS, ReadLimits, load_config, set_config_value
from ostraca.client.wire import Wire
from ostraca.protocol_spec import MalformedError

from .hostile_server import Answer, hostile_registry


def test_limits_default_and_come_from_file_env_and_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_config(home=tmp_path).limits == DEFAULT_LIMITS
    (tmp_path / "config.json").write_text(
        json.dumps({"max_response_bytes": "2MiB", "stall_window_s": 10})
    )
    monkeypatch.setenv("OSTRACA_FETCH_DEADLINE_S", "90.5")
    limits = load_config(home=tmp_path, min_rate_bytes_s="1KiB", stall_window_s=5).limits
    assert limits == ReadLimits(
        max_manifest_bytes=DEFAULT_LIMITS.max_manifest_bytes,
        max_response_bytes=2 * 1024**2,
        request_deadline_s=DEFAULT_LIMITS.request_deadline_s,
        fetch_deadline_s=90.5,
        min_rate_bytes_s=1024,
        stall_window_s=5.0,
    )


def test_config_set_stores_a_limit(tmp_path: Path) -> None:
    set_config_value("request_deadline_s", "15", home=tmp_path)
    assert json.loads((tmp_path / "config.json").read_text()) == {"request_deadline_s": 15.0}
    assert load_config(home=tmp_path).limits.request_deadline_s == 15.0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("fetch_deadline_s", "0", "must be positive"),
        ("max_manifest_bytes", "0", "must be positive"),
        ("stall_window_s", "soon", "number of seconds"),
        ("min_rate_bytes_s", "fast", "not a size"),
    ],
)
def test_bad_limits_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"OSTRACA_{key.upper()}", value)
    with pytest.raises(MalformedError, match=message):
        load_config(home=tmp_path)


def test_an_endless_error_answer_is_capped_too() -> None:
    limits = ReadLimits(max_response_bytes=64 * 1024)
    with hostile_registry() as hostile:
        hostile.routes["/v1/whoami"] = Answer(b"<html>", status=502, mode="endless")
        wire = Wire(hostile.url, limits=limits)
        with pytest.raises(MalformedError, match="max_response_bytes=65536"):
            wire.send("GET", "/v1/whoami")
        wire.close()


def test_a_head_answer_may_declare_a_large_body() -> None:
    with hostile_registry() as hostile:
        wire = Wire(hostile.url, limits=ReadLimits(max_response_bytes=64 * 1024))
        hostile.routes["/v1/blob"] = Answer(length=4 * 1024**3)
        assert wire.send("HEAD", "/v1/blob").headers["Content-Length"] == str(4 * 1024**3)
        wire.close()
