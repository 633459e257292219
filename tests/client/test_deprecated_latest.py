"""``open_dataset(DATASET)`` after the publisher deprecates the newest version: the stream reads
the newest version not deprecated, also for a reader that had already verified the deprecated
one (its chain head is no rollback), and an explicit ``@N`` still reads the deprecated one."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ostraca.client.api import RegistryClient
from ostraca.client.cards import deprecate_version
from ostraca.client.publishing import publish
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import SigningKey

from .client_helpers import NAMESPACE, TERMS, Identity, sample_table
from .stream_helpers import grant_access

DATASET = f"{NAMESPACE}/deprecated"


def _publish(client: RegistryClient, key: SigningKey, seed: int) -> pa.Table:
    table = sample_table(50, seed=seed)
    publish(
        client, table, dataset=DATASET, key=key, license="CC-BY-4.0", terms=TERMS,
        description="deprecation test", progress=False,
    )  # fmt: skip
    return table


def _rows(researcher: Identity, version: int | None = None) -> tuple[int, pa.Table]:
    with open_dataset(DATASET, version=version, client=researcher.client) as ds:
        return ds.manifest.statement.version, ds.to_table()


def test_a_deprecated_newest_version_is_skipped_even_after_it_was_read(
    publisher: Identity, researcher: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _publish(publisher.client, publisher.key, 1)
    second = _publish(publisher.client, publisher.key, 2)
    grant_access(publisher.client, researcher.client, DATASET)
    version, rows = _rows(researcher)  # the reader verifies version 2: its chain head
    assert (version, rows.column("text").to_pylist()) == (2, second.column("text").to_pylist())

    deprecate_version(publisher.client, DATASET, 2, reason="duplicated rows")
    version, rows = _rows(researcher)
    assert (version, rows.column("text").to_pylist()) == (1, first.column("text").to_pylist())
    assert "version 2 is deprecated; using version 1" in capsys.readouterr().err

    version, rows = _rows(researcher, version=2)  # explicit: still served, with a warning
    assert (version, rows.num_rows) == (2, second.num_rows)
    assert "deprecated: duplicated rows" in capsys.readouterr().err
