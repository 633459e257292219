"""A reader of an encrypted version gets its key grants with its grants (``GET /v1/grants
?dataset=…&key_grants=true``, one round trip): a real registry over HTTP behind a real proxy
that rewrites that answer. Withheld, another grantee's, tampered or re-signed key grants yield
a typed error and no row; an older registry's answer without the field makes the reader ask
``/key-grants`` as before."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ostraca.client.encryption import identity_encryption_key, key_grant_envelope
from ostraca.client.keyflow import key_grants
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import utc_now
from ostraca.protocol_spec.canonical import canonical_bytes
from ostraca.protocol_spec.crypto import DataKey
from ostraca.protocol_spec.errors import OstracaError
from ostraca.protocol_spec.keys import SigningKey
from ostraca.server.app import create_app
from ostraca.server.settings import Settings

from ..client.client_helpers import Identity, make_identity
from ..registry_helpers import serve_app as serve
from .server_helpers import MovableClock
from .tlog_helpers import HostileProxy, World, make_world


@dataclass
class Scene:
    world: World
    proxy: HostileProxy
    paths: list[str]
    """Every path (with its query) the researcher's client asked the proxy for."""

    def rewrite_listing(self, change: Callable[[dict[str, Any]], None]) -> None:
        """The proxy passes the grants-with-key-grants answer through ``change``."""

        def rewrite(path: str, body: bytes) -> bytes:
            self.paths.append(path)
            if path.startswith("/v1/grants?") and "key_grants=true" in path:
                answer = json.loads(body)
                change(answer)
                return json.dumps(answer).encode()
            return body

        self.proxy.rewrite = rewrite

    def refused(self, code: str) -> None:
        client = self.world.researcher.client
        rows: list[int] = []
        with (
            pytest.raises(OstracaError) as info,
            open_dataset(self.world.dataset, client=client) as ds,
        ):
            rows.extend(batch.num_rows for batch in ds)
        assert info.value.code == code, info.value.message
        assert rows == []


@pytest.fixture
def scene(settings: Settings, clock: MovableClock, tmp_path: Path) -> Iterator[Scene]:
    with (
        serve(create_app(settings, clock=clock)) as url,
        HostileProxy(url) as proxy,
        make_world(tmp_path, url, proxy.url) as world,
    ):
        scene = Scene(world=world, proxy=proxy, paths=[])
        scene.rewrite_listing(lambda _answer: None)
        yield scene


def _second_grantee(scene: Scene, tmp_path: Path) -> Identity:
    """Another researcher granted the same dataset (straight to the registry)."""
    bob = make_identity(tmp_path, scene.world.registry, "bob", "researcher")
    request = bob.client.request_access(scene.world.dataset, purpose="another study")
    scene.world.publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    return bob


def test_the_key_grants_come_with_the_grants_in_one_round_trip(scene: Scene) -> None:
    with open_dataset(scene.world.dataset, client=scene.world.researcher.client) as ds:
        assert ds.manifest.statement.encryption is not None
        assert ds.to_table().num_rows == 10
    assert any("key_grants=true" in p for p in scene.paths)
    assert not any(p.endswith("/key-grants") for p in scene.paths)


def test_an_older_registry_without_the_field_is_asked_for_them_apart(scene: Scene) -> None:
    scene.rewrite_listing(lambda answer: answer.pop("key_grants"))
    with open_dataset(scene.world.dataset, client=scene.world.researcher.client) as ds:
        assert ds.to_table().num_rows == 10
    assert any(p.endswith(f"/datasets/{scene.world.dataset}/key-grants") for p in scene.paths)


def test_withheld_key_grants_are_missing_keys(scene: Scene) -> None:
    scene.rewrite_listing(lambda answer: answer.update(key_grants=[]))
    scene.refused("missing_key")


def test_another_grantees_key_grants_open_nothing(scene: Scene, tmp_path: Path) -> None:
    bob = _second_grantee(scene, tmp_path)
    try:
        listed = key_grants(bob.client, scene.world.dataset)
        theirs = [item.model_dump(mode="json") for item in listed]
    finally:
        bob.client.close()
    assert theirs  # bob's own key grant, wrapped to bob's encryption key
    scene.rewrite_listing(lambda answer: answer.update(key_grants=theirs))
    scene.refused("missing_key")


def test_a_tampered_key_grant_is_refused(scene: Scene) -> None:
    """The registry swaps the wrapped key of the researcher's key grant for bytes of its own."""

    def tamper(answer: dict[str, Any]) -> None:
        for item in answer["key_grants"]:
            statement = json.loads(base64.b64decode(item["envelope"]["payload"]))
            statement["keys"][0]["wrapped"] = base64.b64encode(os.urandom(1168)).decode()
            item["envelope"]["payload"] = base64.b64encode(canonical_bytes(statement)).decode()

    scene.rewrite_listing(tamper)
    scene.refused("bad_signature")


def test_a_key_grant_the_registry_signed_itself_is_refused(scene: Scene) -> None:
    """The registry makes up a key grant for the researcher: a data key of its choosing,
    wrapped to the researcher's registered encryption key, signed with a key that is not the
    publisher's. A reader that took it would decrypt with a key the registry knows."""
    world = scene.world
    forged = key_grant_envelope(
        SigningKey.generate(),
        {1: {"default": DataKey.generate()}},
        dataset=world.dataset,
        grantee=world.researcher.client.principal_id,
        recipient=identity_encryption_key(world.researcher.key).public,
        grant=world.grant.grant_id,
        created=utc_now(),
    )

    def forge(answer: dict[str, Any]) -> None:
        (item,) = answer["key_grants"]
        item["envelope"] = forged.to_dict()

    scene.rewrite_listing(forge)
    scene.refused("untrusted_key")
