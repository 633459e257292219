"""A researcher who rotates its own key keeps its grants, against a real registry: grants name
the stable principal id (SPEC.md 3.3, 5.2 G7), which the client finds by its login, and key
grants open with the former identity's derived key; another principal still cannot use them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ostraca.client.keystore import rotate_identity
from ostraca.client.stream import open_dataset
from ostraca.client.verified import find_grant
from ostraca.protocol_spec import (
    AccessDeniedError,
    Envelope,
    ScopeError,
    SigningKey,
    utc_now,
    verify_grant,
)

from ..registry_helpers import publish_as
from .client_helpers import NAMESPACE, Identity, make_identity, sample_table


def _rows(researcher: Identity, dataset: str) -> int:
    with open_dataset(dataset, client=researcher.client) as ds:
        return sum(b.num_rows for b in ds)


def test_grants_survive_the_researchers_rotation(
    publisher: Identity, researcher: Identity, registry: str, tmp_path: Path
) -> None:
    datasets = {f"{NAMESPACE}/plain": False, f"{NAMESPACE}/sealed": True}
    for dataset, encrypt in datasets.items():
        publish_as(publisher, sample_table(120), dataset=dataset, encrypt=encrypt)
        request = researcher.client.request_access(dataset, purpose="before my rotation")
        publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
        assert _rows(researcher, dataset) == 120
    first = researcher.keyid
    # The researcher rotates its identity the way `ostraca rotate-key` does (old file kept).
    new = SigningKey.generate()
    rotate_identity(researcher.config.identity_path, new, lambda: researcher.client.rotate_key(new))
    assert (researcher.client.keyid, researcher.client.principal_id) == (new.keyid, first)
    for dataset in datasets:
        assert _rows(researcher, dataset) == 120  # plaintext and encrypted alike
    # A grant asked for after the rotation names the stable id too, and reads.
    later = f"{NAMESPACE}/later"
    publish_as(publisher, sample_table(30), dataset=later)
    request = researcher.client.request_access(later, purpose="after my rotation")
    grant = publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    assert grant.grantee == first
    assert _rows(researcher, later) == 30

    # Another principal cannot use the researcher's grant: its client finds it by its own id.
    other = make_identity(tmp_path, registry, "mallory", "researcher")
    with pytest.raises(AccessDeniedError):
        _rows(other, f"{NAMESPACE}/plain")
    with open_dataset(f"{NAMESPACE}/plain", client=researcher.client) as ds:
        items = researcher.client.list_grants(dataset=f"{NAMESPACE}/plain")
        with pytest.raises(AccessDeniedError):
            find_grant(
                items,
                manifest=ds.manifest,
                grantee=other.client.principal_id,
                now=utc_now(),
                columns=None,
            )
        with pytest.raises(ScopeError, match="another key"):
            verify_grant(
                Envelope.from_dict(items[0].envelope),
                manifest=ds.manifest,
                grantee=other.client.principal_id,
                now=utc_now(),
            )
    other.client.close()
