"""Dataset cards and deprecations (SPEC 3.7, 3.8) over real HTTP: a registry under uvicorn on a
loopback port, real signatures, on SQLite and PostgreSQL. The attacks: a card or deprecation
signed by another institution, an older card replayed, a researcher deprecating."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ostraca.protocol_spec import Envelope, SigningKey, sign_statement, utc_now
from ostraca.protocol_spec.cards import MAX_README, DatasetCard, Deprecation
from ostraca.server.app import create_app
from ostraca.server.settings import Settings

from ..registry_helpers import serve_app
from .server_helpers import (
    Built,
    Identity,
    MovableClock,
    assert_problem,
    blob_url,
    grant_access,
    new_identity,
    post_envelope,
    publish_dataset,
    request_access,
)

DATASET = "acme/books"
CARD = f"/v1/datasets/{DATASET}/card"
DEPRECATIONS = f"/v1/datasets/{DATASET}/deprecations"


@pytest.fixture
def app(settings: Settings, clock: MovableClock) -> FastAPI:
    return create_app(settings, clock=clock)


@pytest.fixture
def http(app: FastAPI) -> Iterator[httpx.Client]:
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


@dataclass
class Cast:
    owner: Identity
    other: Identity
    researcher: Identity
    v1: Built
    v2: Built
    grant_id: str


@pytest.fixture
def cast(http: httpx.Client) -> Cast:
    owner = new_identity(http, "institution", "Acme Institute")
    other = new_identity(http, "institution", "Globex Labs")
    researcher = new_identity(http, "researcher", "Grace")
    v1 = publish_dataset(http, owner, DATASET)
    v2 = publish_dataset(
        http, owner, DATASET, version=2, previous=v1.digest, create_namespace=False, seed=1
    )
    grant_id = grant_access(
        http, owner, researcher, DATASET, request=request_access(http, researcher, DATASET)
    )
    return Cast(owner, other, researcher, v1, v2, grant_id)


def card(
    key: SigningKey, sequence: int, previous: str | None, *, readme: str = "# Books\n"
) -> bytes:
    statement = DatasetCard(
        dataset=DATASET,
        publisher=key.keyid,
        sequence=sequence,
        previous=previous,
        description=f"card {sequence}",
        readme=readme,
        created=utc_now(),
    )
    return sign_statement(statement, [key]).to_json()


def deprecation(key: SigningKey, built: Built, *, version: int | None = None) -> bytes:
    statement = Deprecation(
        dataset=DATASET,
        version=version or built.manifest.version,
        manifest=Envelope.from_json(built.envelope).digest,
        publisher=key.keyid,
        reason="rows 10-20 mislabelled",
        created=utc_now(),
    )
    return sign_statement(statement, [key]).to_json()


def logged_entry(http: httpx.Client, statement_id: str) -> bytes:
    size = int(http.get("/v1/log/checkpoint").text.splitlines()[1])
    r = http.get(f"/v1/log/statements/{statement_id}", params={"tree_size": size})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return base64.b64decode(body["entry"])


def test_cards_supersede_each_other_and_are_served_byte_for_byte(
    http: httpx.Client, cast: Cast
) -> None:
    assert_problem(http.get(CARD), 404, "not_found")
    first = card(cast.owner.key, 1, None)
    r = post_envelope(http, CARD, cast.owner, first)
    assert r.status_code == 201, r.text
    first_id = r.json()["card_id"]
    second = card(cast.owner.key, 2, first_id, readme="# Books\n\nNow with a README.")
    assert post_envelope(http, CARD, cast.owner, second).status_code == 201
    current = http.get(CARD).json()  # public: no token
    assert current["sequence"] == 2
    assert current["readme"] == "# Books\n\nNow with a README."
    served = Envelope.from_dict(current["envelope"])
    assert served.digest == Envelope.from_json(second).digest
    assert logged_entry(http, served.digest) == second  # in the log, byte for byte
    events = http.get(f"/v1/datasets/{DATASET}/audit", headers=cast.owner.headers).json()
    assert [e["action"] for e in events["items"]].count("card") == 2


def test_an_older_card_replayed_is_refused(http: httpx.Client, cast: Cast) -> None:
    first = card(cast.owner.key, 1, None)
    first_id = post_envelope(http, CARD, cast.owner, first).json()["card_id"]
    assert post_envelope(http, CARD, cast.owner, card(cast.owner.key, 2, first_id)).is_success
    assert_problem(post_envelope(http, CARD, cast.owner, first), 409, "rollback")
    skipping = card(cast.owner.key, 4, "ab" * 32)
    assert_problem(post_envelope(http, CARD, cast.owner, skipping), 409, "chain_broken")
    fork = card(cast.owner.key, 3, "cd" * 32)
    assert_problem(post_envelope(http, CARD, cast.owner, fork), 409, "chain_broken")
    assert http.get(CARD).json()["sequence"] == 2


def test_a_card_of_another_institution_is_refused(http: httpx.Client, cast: Cast) -> None:
    by_other = card(cast.other.key, 1, None)
    assert_problem(post_envelope(http, CARD, cast.other, by_other), 403, "access_denied")
    assert_problem(post_envelope(http, CARD, cast.owner, by_other), 422, "untrusted_key")
    own = card(cast.owner.key, 1, None)
    assert_problem(post_envelope(http, CARD, cast.researcher, own), 403, "access_denied")
    assert_problem(http.get(CARD), 404, "not_found")


def test_deprecated_versions_are_skipped_by_latest_and_grants_keep_working(
    http: httpx.Client, cast: Cast
) -> None:
    posted = deprecation(cast.owner.key, cast.v2)
    r = post_envelope(http, DEPRECATIONS, cast.owner, posted)
    assert r.status_code == 201, r.text
    item = r.json()
    assert (item["version"], item["reason"]) == (2, "rows 10-20 mislabelled")
    latest = http.get(f"/v1/datasets/{DATASET}/versions/latest/manifest")
    assert latest.content == cast.v1.envelope
    explicit = http.get(f"/v1/datasets/{DATASET}/versions/2/manifest")
    assert explicit.content == cast.v2.envelope
    listing = http.get(DEPRECATIONS).json()
    assert (listing["latest_version"], listing["current_version"]) == (2, 1)
    assert [d["version"] for d in listing["items"]] == [2]
    # The grant covers the deprecated version still: its blobs stay readable.
    shard = cast.v2.manifest.shards[0].sha256
    assert http.get(blob_url(DATASET, shard), headers=cast.researcher.headers).status_code == 200
    assert logged_entry(http, item["deprecation_id"]) == posted
    events = http.get(f"/v1/datasets/{DATASET}/audit", headers=cast.owner.headers).json()
    assert ("deprecate", 2) in [(e["action"], e["version"]) for e in events["items"]]
    again = deprecation(cast.owner.key, cast.v2)
    assert_problem(post_envelope(http, DEPRECATIONS, cast.owner, again), 409, "conflict")
    # Every version deprecated: latest is the newest one.
    assert post_envelope(http, DEPRECATIONS, cast.owner, deprecation(cast.owner.key, cast.v1))
    assert http.get(DEPRECATIONS).json()["current_version"] == 2


def test_only_the_publisher_deprecates(http: httpx.Client, cast: Cast) -> None:
    by_other = deprecation(cast.other.key, cast.v2)
    assert_problem(post_envelope(http, DEPRECATIONS, cast.other, by_other), 403, "access_denied")
    assert_problem(post_envelope(http, DEPRECATIONS, cast.owner, by_other), 422, "untrusted_key")
    own = deprecation(cast.owner.key, cast.v2)
    assert_problem(post_envelope(http, DEPRECATIONS, cast.researcher, own), 403, "access_denied")
    by_researcher = deprecation(cast.researcher.key, cast.v2)
    assert_problem(
        post_envelope(http, DEPRECATIONS, cast.researcher, by_researcher), 403, "access_denied"
    )
    # Naming version 2 but the manifest of version 1: not this version's deprecation.
    crossed = deprecation(cast.owner.key, cast.v1, version=2)
    assert_problem(post_envelope(http, DEPRECATIONS, cast.owner, crossed), 403, "out_of_scope")
    missing = deprecation(cast.owner.key, cast.v1, version=7)
    assert_problem(post_envelope(http, DEPRECATIONS, cast.owner, missing), 404, "not_found")
    assert http.get(DEPRECATIONS).json()["items"] == []


def test_a_card_from_the_future_is_refused(
    http: httpx.Client, cast: Cast, clock: MovableClock
) -> None:
    clock.advance(-timedelta(hours=1).total_seconds())
    assert_problem(
        post_envelope(http, CARD, cast.owner, card(cast.owner.key, 1, None)),
        422,
        "verification_failed",
    )


def test_the_routes_are_typed_in_openapi(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    card = doc["paths"][CARD.replace(DATASET, "{ns}/{name}")]
    deps = doc["paths"][DEPRECATIONS.replace(DATASET, "{ns}/{name}")]

    def schema(op: dict[str, Any], status: str) -> str:
        ref: str = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[1]

    assert (schema(card["post"], "201"), schema(card["get"], "200")) == ("CardOut", "CardOut")
    assert schema(deps["post"], "201") == "DeprecationItem"
    assert schema(deps["get"], "200") == "DeprecationList"
    assert card["post"]["security"] == [{"bearer": []}]
    assert "security" not in card["get"]


def test_the_longest_readme_is_accepted_and_one_more_character_is_not(
    http: httpx.Client, cast: Cast
) -> None:
    longest = "é" * MAX_README  # two UTF-8 bytes each: over the 64 KiB cap of other statements
    r = post_envelope(http, CARD, cast.owner, card(cast.owner.key, 1, None, readme=longest))
    assert r.status_code == 201, r.text
    assert http.get(CARD).json()["readme"] == longest
    too_long = DatasetCard.model_construct(
        dataset=DATASET,
        publisher=cast.owner.keyid,
        sequence=2,
        previous=r.json()["card_id"],
        description="",
        readme=longest + "é",
        created=utc_now(),
    )
    body = sign_statement(too_long, [cast.owner.key]).to_json()
    assert_problem(post_envelope(http, CARD, cast.owner, body), 422, "malformed")
