"""Column groups end to end on a real registry: publish with ``column_groups``, grants that name
groups, streaming that fetches only the groups read (counted in the registry's audit log) and
zips them into record batches, every chunk still verified."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import MalformedError, ScopeError

from .client_helpers import sample_table
from .stream_helpers import IdentityLike, grant_access

DATASET = "acme/books"
GROUPS = {"scores": ["score"]}
_RANGE = re.compile(r"^sha256:([0-9a-f]{64}) bytes (\d+)-(-?\d+)/")


def _publish(publish_table: Callable[..., PublishResult]) -> tuple[pa.Table, PublishResult]:
    table = sample_table(3000, text_bytes=200)
    result = publish_table(table, shard_bytes=65536, chunk_bytes=65536, column_groups=GROUPS)
    assert len(result.shards) > 1
    return table, result


def _bytes_served(publisher: IdentityLike, grant_id: str) -> Counter[str]:
    """Bytes the registry served under ``grant_id``, by blob digest (from its audit log)."""
    served: Counter[str] = Counter()
    for event in publisher.client.audit(DATASET, limit=1000):
        m = _RANGE.match(event.detail)
        if event.action == "read" and event.grant_id == grant_id and m:
            served[m.group(1)] += int(m.group(3)) - int(m.group(2)) + 1
    return served


def _blobs(result: PublishResult, group: str) -> set[str]:
    """Every blob (stream and chunk list) of ``group`` in the published shards."""
    return {
        d
        for s in result.shards
        for b in s.blobs()
        if b.group == group
        for d in (b.sha256, b.chunks)
    }


def test_group_grant_reads_only_its_group(
    publisher: IdentityLike, researcher: IdentityLike, publish_table: Any
) -> None:
    table, result = _publish(publish_table)
    # A column grant that is not whole groups is refused at approve, before anything is signed.
    with pytest.raises(MalformedError, match=r"not whole column groups.*scores: score"):
        grant_access(publisher.client, researcher.client, DATASET, columns=["id"])
    assert publisher.client.list_grants(dataset=DATASET) == []
    grant = grant_access(publisher.client, researcher.client, DATASET, columns=["id", "text"])
    assert grant.groups == ["default"]
    # Asking for no columns gives the granted ones (not out_of_scope).
    with open_dataset(DATASET, client=researcher.client) as ds:
        assert ds.columns == ["id", "text"]
        got = ds.to_table()
        with pytest.raises(ScopeError):
            ds.to_table(columns=["score"])
    assert got.equals(table.select(["id", "text"]))
    served = _bytes_served(publisher, grant.grant_id)
    default, scores = _blobs(result, "default"), _blobs(result, "scores")
    assert set(served) <= default
    assert not set(served) & scores
    assert sum(served.values()) >= sum(s.bytes for s in result.shards)
    # The registry itself refuses the other group's bytes to this grantee.
    other = result.shards[0].blobs()[1]
    with pytest.raises(ScopeError, match="column group 'scores'"):
        researcher.client.get_blob(other.sha256, dataset=DATASET)


def test_reading_one_group_moves_only_its_bytes(
    publisher: IdentityLike, researcher: IdentityLike, publish_table: Any
) -> None:
    table, result = _publish(publish_table)
    grant = grant_access(publisher.client, researcher.client, DATASET)
    with open_dataset(DATASET, client=researcher.client, columns=["score"]) as ds:
        assert ds.to_table().equals(table.select(["score"]))
    served = _bytes_served(publisher, grant.grant_id)
    scores = _blobs(result, "scores")
    assert set(served) <= scores
    group_bytes = sum(b.bytes for s in result.shards for b in s.blobs() if b.group == "scores")
    assert group_bytes < result.total_bytes / 2
    # Both groups, zipped back into record batches of the columns asked for, in that order.
    with open_dataset(DATASET, client=researcher.client, columns=["score", "id"]) as ds:
        batches = list(ds)
        assert all(b.schema.names == ["score", "id"] for b in batches)
        assert pa.Table.from_batches(batches).equals(table.select(["score", "id"]))
