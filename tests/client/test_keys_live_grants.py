"""A new version's data keys reach every live grant at publish (ENCRYPTION.md 6), against a real
registry over HTTP: each grantee's current encryption key is checked in the transparency log
(together, LOG.md 1.7) before the keys are wrapped to it; a revoked grant gets none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ostraca.client.keyflow import key_grants
from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import AccessDeniedError

from .client_helpers import NAMESPACE, Identity, make_identity, sample_table
from .stream_helpers import grant_access

DATASET = f"{NAMESPACE}/books"


def test_every_live_grant_gets_the_new_versions_keys(
    tmp_path: Path,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    publish_table(sample_table(40))
    others = [make_identity(tmp_path, registry, f"r{i}", "researcher") for i in range(2)]
    grant_access(publisher.client, researcher.client, DATASET)
    grants = [grant_access(publisher.client, o.client, DATASET) for o in others]
    publisher.client.revoke(grants[1].grant_id)
    second = sample_table(50, seed=1)
    publish_table(second)
    for reader in (researcher, others[0]):
        assert len(key_grants(reader.client, DATASET)) == 2  # at approve, and for version 2
        with open_dataset(DATASET, client=reader.client) as ds:
            assert ds.manifest.statement.version == 2
            assert ds.to_table().equals(second)
    revoked = [i for i in key_grants(publisher.client, DATASET) if i.grant_id == grants[1].grant_id]
    assert len(revoked) == 1  # the one made at approve; none for version 2
    with pytest.raises(AccessDeniedError):
        open_dataset(DATASET, client=others[1].client)
    for other in others:
        other.client.close()
