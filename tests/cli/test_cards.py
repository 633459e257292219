"""``ostraca card`` and ``ostraca deprecate`` through the installed entry point (a subprocess)
against a real registry; a hostile proxy in front of it replays an old card and serves a card
and a deprecation signed by another institution, which the client refuses."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ostraca.client.cards import deprecate_version, publish_card
from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import SigningKey, sign_statement, utc_now
from ostraca.protocol_spec.cards import DatasetCard, Deprecation
from ostraca.protocol_spec.errors import RevokedError

from ..client.client_helpers import TERMS, Identity, sample_table
from ..client.stream_helpers import grant_access
from ..server.tlog_helpers import HostileProxy
from .test_exit_codes import error_line, ostraca

DATASET = "acme/books"
HOSTILE_README = '# Books\n\nParagraphs of old books.\n\n<script>alert("pwned")</script>\n'


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def _publish_cli(who: Identity, tmp_path: Path, description: str) -> str:
    if not (tmp_path / "books.parquet").exists():
        pq.write_table(sample_table(200), tmp_path / "books.parquet")
    proc = ostraca(
        who.env(),
        "publish",
        str(tmp_path / "books.parquet"),
        "--dataset",
        DATASET,
        "--license",
        "CC-BY-4.0",
        "--terms",
        TERMS,
        "--description",
        description,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_card_edits_through_the_cli(
    publisher: Identity, researcher: Identity, tmp_path: Path
) -> None:
    _publish_cli(publisher, tmp_path, "Books")
    again = _publish_cli(publisher, tmp_path, "Books")
    assert "nothing to do" in again
    assert f"ostraca card {DATASET}" in again  # the hint at the command that does it
    none_yet = ostraca(researcher.env(), "card", DATASET)
    assert none_yet.returncode == 1
    assert error_line(none_yet).startswith("error [not_found]")
    (tmp_path / "README.md").write_text(HOSTILE_README)
    first = _json(
        ostraca(
            publisher.env(),
            "card",
            DATASET,
            "--description",
            "Public-domain books, one row per paragraph",
            "--readme",
            str(tmp_path / "README.md"),
            "--json",
        )
    )
    assert first["sequence"] == 1
    seen = _json(ostraca(researcher.env(), "card", DATASET, "--json"))
    assert (seen["readme"], seen["sequence"]) == (HOSTILE_README, 1)
    assert seen["signed_by"] == publisher.keyid
    # Only the description changes; the README is kept.
    second = _json(ostraca(publisher.env(), "card", DATASET, "--description", "Books", "--json"))
    assert second["sequence"] == 2
    seen = _json(ostraca(researcher.env(), "card", DATASET, "--json"))
    assert (seen["description"], seen["readme"], seen["sequence"]) == ("Books", HOSTILE_README, 2)
    shown = ostraca(researcher.env(), "show", DATASET)
    assert shown.returncode == 0, shown.stderr
    assert "Books\n" in shown.stdout
    assert "readme     Paragraphs of old books." in shown.stdout
    card = _json(ostraca(researcher.env(), "show", DATASET, "--json"))["card"]
    assert isinstance(card, dict)
    assert card["sequence"] == 2
    # A researcher cannot sign the publisher's card; a missing README file is one line.
    refused = ostraca(researcher.env(), "card", DATASET, "--description", "mine now")
    assert refused.returncode == 1
    assert error_line(refused).startswith("error [access_denied]")
    missing = ostraca(publisher.env(), "card", DATASET, "--readme", str(tmp_path / "nope.md"))
    assert missing.returncode == 1
    assert error_line(missing).startswith("error [not_found]")


def test_the_client_refuses_a_replayed_or_foreign_card(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> None:
    published = publish_table()
    publish_card(publisher.client, DATASET, readme="# first")
    with HostileProxy(researcher.config.registry) as proxy:
        first_answer = proxy._http.get(f"{proxy.upstream}/v1/datasets/{DATASET}/card").content
        publish_card(publisher.client, DATASET, readme="# second")
        env = {**researcher.env(), "OSTRACA_REGISTRY": proxy.url}
        assert _json(ostraca(env, "card", DATASET, "--json"))["sequence"] == 2
        proxy.rewrite = lambda path, body: first_answer if path.endswith("/card") else body
        replayed = ostraca(env, "card", DATASET)
        assert replayed.returncode == 1
        assert error_line(replayed).startswith("error [rollback]")
        # A card signed by another institution's key, well-formed otherwise.
        stranger = SigningKey.generate()
        forged = DatasetCard(
            dataset=DATASET,
            publisher=stranger.keyid,
            sequence=3,
            previous="ab" * 32,
            description="buy our data instead",
            created=utc_now(),
        )
        answer = json.loads(first_answer)
        answer["envelope"] = json.loads(sign_statement(forged, [stranger]).to_json())
        proxy.rewrite = lambda path, body: (
            json.dumps(answer).encode() if path.endswith("/card") else body
        )
        foreign = ostraca(env, "card", DATASET)
        assert foreign.returncode == 1
        assert error_line(foreign).startswith("error [untrusted_key]")
        assert ostraca(env, "show", DATASET).returncode == 1
        # A deprecation signed by another institution, to make `latest` skip a version.
        fake = Deprecation(
            dataset=DATASET,
            version=1,
            manifest=published.digest,
            publisher=stranger.keyid,
            reason="gone",
            created=utc_now(),
        )
        fake_env = sign_statement(fake, [stranger])
        listing = {
            "dataset": DATASET,
            "latest_version": 1,
            "current_version": 1,
            "items": [
                {
                    "deprecation_id": fake_env.digest,
                    "dataset": DATASET,
                    "version": 1,
                    "manifest": published.digest,
                    "publisher": stranger.keyid,
                    "reason": "gone",
                    "created": "2026-01-01T00:00:00Z",
                    "accepted": "2026-01-01T00:00:00Z",
                    "envelope": json.loads(fake_env.to_json()),
                }
            ],
        }
        proxy.rewrite = lambda path, body: (
            json.dumps(listing).encode() if path.endswith("/deprecations") else body
        )
        skipped = ostraca(env, "show", DATASET)
        assert skipped.returncode == 1
        assert error_line(skipped).startswith("error [untrusted_key]")


def test_deprecate_through_the_cli(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> None:
    publish_table()
    second = publish_table(sample_table(500, seed=1))
    grant = grant_access(publisher.client, researcher.client, DATASET)
    before = _json(ostraca(researcher.env(), "show", DATASET, "--json"))
    assert before["manifest"]["version"] == 2  # type: ignore[index]
    not_yours = ostraca(researcher.env(), "deprecate", f"{DATASET}@2", "--reason", "mine")
    assert not_yours.returncode == 1
    assert error_line(not_yours).startswith("error [access_denied]")
    no_version = ostraca(publisher.env(), "deprecate", DATASET, "--reason", "which one?")
    assert no_version.returncode == 2
    assert error_line(no_version).startswith("error [usage]")
    done = _json(
        ostraca(publisher.env(), "deprecate", f"{DATASET}@2", "--reason", "bad rows", "--json")
    )
    assert (done["version"], done["reason"]) == (2, "bad rows")
    twice = ostraca(publisher.env(), "deprecate", f"{DATASET}@2", "--reason", "again")
    assert twice.returncode == 1
    assert error_line(twice).startswith("error [conflict]")
    # Without @N: version 1, although this client verified version 2 before (no rollback).
    latest = ostraca(researcher.env(), "show", DATASET, "--json")
    assert json.loads(latest.stdout)["manifest"]["version"] == 1, latest.stderr
    assert "version 2 is deprecated" in latest.stderr
    # @2 still works, with a warning; the grant still covers it.
    explicit = ostraca(researcher.env(), "show", f"{DATASET}@2", "--json")
    shown = json.loads(explicit.stdout)
    assert (shown["manifest"]["version"], shown["deprecated"]) == (2, "bad rows")
    assert "warning:" in explicit.stderr
    with open_dataset(DATASET, version=2, client=researcher.client) as ds:
        assert sum(b.num_rows for b in ds) == second.total_rows
    events = _json(ostraca(publisher.env(), "audit", DATASET, "--json"))["items"]
    assert ("deprecate", 2) in [(e["action"], e["version"]) for e in events]  # type: ignore[attr-defined]
    # Until the publisher revokes the grant.
    publisher.client.revoke(grant.grant_id)
    with (
        pytest.raises(RevokedError),
        open_dataset(DATASET, version=2, client=researcher.client) as ds,
    ):
        sum(b.num_rows for b in ds)


def test_cards_and_deprecations_follow_a_key_rotation(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> None:
    publish_table()
    publish_table(sample_table(300, seed=1))
    assert _json(ostraca(researcher.env(), "show", DATASET, "--json"))["manifest"]  # pins the key
    old = publisher.keyid
    publish_card(publisher.client, DATASET, readme="# before the rotation")
    assert _json(ostraca(researcher.env(), "card", DATASET, "--json"))["signed_by"] == old
    deprecate_version(publisher.client, DATASET, 2, reason="signed with the old key")
    new = SigningKey.generate()
    publisher.client.rotate_key(new)
    # The old key signs nothing new now; the new one (its verified successor) does.
    publish_card(publisher.client, DATASET, readme="# after the rotation")
    seen = _json(ostraca(researcher.env(), "card", DATASET, "--json"))
    assert (seen["sequence"], seen["signed_by"]) == (2, new.keyid)
    # The deprecation the old key signed before its rotation still counts.
    latest = _json(ostraca(researcher.env(), "show", DATASET, "--json"))
    assert latest["manifest"]["version"] == 1  # type: ignore[index]
