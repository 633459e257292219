"""A researcher who first meets a namespace after its publisher rotated keys, against a real
registry: the relayed rotation is verified and its successor recorded, so a grant by the new key
covers the versions the old key signed (SPEC.md 5.2 G2); a forged rotation is refused."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.keyflow import rewrap_escrow
from ostraca.client.stream import open_dataset
from ostraca.client.trust import TrustStore
from ostraca.protocol_spec import (
    KeyRotation,
    PublicKey,
    SigningKey,
    UntrustedKeyError,
    sign_statement,
    utc_now,
)

from ..registry_helpers import publish_as
from .client_helpers import NAMESPACE, Identity, sample_table

DATASET = f"{NAMESPACE}/books"


def test_first_use_after_a_rotation_records_the_verified_successor(
    publisher: Identity, researcher: Identity
) -> None:
    v1 = publish_as(publisher, sample_table(200), dataset=DATASET)
    old, new = publisher.key, SigningKey.generate()
    publisher.client.rotate_key(new, reason="laptop lost")
    assert rewrap_escrow(publisher.client, [old]) == [DATASET]
    # The researcher meets the namespace only now: no pin from before the rotation.
    request = researcher.client.request_access(DATASET, purpose="first use after a rotation")
    grant = publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    assert grant.publisher == new.keyid
    with open_dataset(DATASET, version=1, client=researcher.client) as ds:
        assert (ds.manifest.signer.keyid, ds.grant.signer.keyid) == (old.keyid, new.keyid)
        assert sum(b.num_rows for b in ds) == 200
    assert ds.provenance.manifest_digest == v1.digest
    store = TrustStore(researcher.home)
    assert store.pinned(NAMESPACE) == {new.keyid: new.public}
    assert set(store.successors(NAMESPACE, old.keyid)) == {new.keyid}


class _HostileRegistry(httpx.BaseTransport):
    """The real registry, except that it lists the namespace owner's key as rotated to a key of
    its own and relays a rotation to it that the owner's key never signed."""

    def __init__(self, publisher: SigningKey, own: SigningKey) -> None:
        self._inner = httpx.HTTPTransport()
        self._publisher, self._own = publisher, own
        forged = KeyRotation(
            old_key=publisher.keyid,
            new_key=PublicKey.from_verify_key(own.public),
            created=utc_now(),
        )
        self.rotation = sign_statement(forged, [own])

    def close(self) -> None:
        self._inner.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        path = request.url.path
        if path == f"/v1/namespaces/{NAMESPACE}":
            body = json.loads(response.read())
            response.close()
            for key in body["keys"]:
                key.update(status="rotated", rotated=key["created"], successor=self._own.keyid)
            own = {"keyid": self._own.keyid, "public": self._own.public.b64, "status": "active"}
            body["keys"].insert(0, {**own, "created": body["keys"][0]["created"]})
            return httpx.Response(200, json=body)
        if path.startswith("/v1/principals/") and path.endswith("/rotations"):
            body = json.loads(response.read())
            response.close()
            when = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
            body["items"] = [
                {
                    "rotation_id": "0" * 64,
                    "principal": self._publisher.keyid,
                    "old_key": self._publisher.keyid,
                    "new_key": PublicKey.from_verify_key(self._own.public).model_dump(mode="json"),
                    "reason": "",
                    "created": when,
                    "rotated_at": when,
                    "envelope": json.loads(self.rotation.to_json()),
                }
            ]
            body["active_key"] = self._own.keyid
            return httpx.Response(200, json=body)
        return response


def test_a_forged_rotation_relayed_on_first_use_is_refused(
    publisher: Identity, researcher: Identity
) -> None:
    publish_as(publisher, sample_table(50), dataset=DATASET)
    hostile = _HostileRegistry(publisher.key, SigningKey.generate())
    with RegistryClient(researcher.config, transport=hostile) as client:
        assert client.namespace_keys(NAMESPACE).rotated.keys() == {publisher.keyid}
        with pytest.raises(UntrustedKeyError, match="relays no rotation signed by it"):
            open_dataset(DATASET, client=client)
    assert TrustStore(researcher.home).pinned(NAMESPACE) is None  # nothing was pinned
