"""Trainer fixtures. Tests run on one CPU thread: results are then reproducible and cheap on 2
cores. ``data`` is one real registry for the session with the trainer's datasets published on it
(real publisher), a researcher granted each of them, and the researcher's pulled copies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pyarrow as pa
import pytest
import torch

from ostraca.client.pull import pull
from ostraca.protocol_spec import utc_now

from ..client.client_helpers import NAMESPACE, make_identity
from ..registry_helpers import publish_as, running_registry
from .trainer_testlib import SHARD_BYTES, Published, TrainerData, ids_table, text_table

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainerData]:
    root = tmp_path_factory.mktemp("trainer-data")
    with running_registry(root / "registry") as reg:
        publisher = make_identity(root, reg.url, "acme-lab", "institution")
        publisher.client.create_namespace(NAMESPACE)
        researcher = make_identity(root, reg.url, "ada", "researcher")

        def publish(name: str, table: pa.Table) -> Published:
            dataset = f"{NAMESPACE}/{name}"
            result = publish_as(
                publisher,
                table,
                dataset=dataset,
                shard_bytes=SHARD_BYTES,
                chunk_bytes=SHARD_BYTES,
                compression="none",
            )
            request = researcher.client.request_access(dataset, purpose="training tests")
            publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=30))
            copy = root / "copies" / name
            pull(dataset, copy, client=researcher.client)
            return Published(dataset=dataset, result=result, copy=copy)

        try:
            yield TrainerData(
                registry=reg,
                publisher=publisher,
                researcher=researcher,
                corpus=publish("corpus", text_table(720)),
                small=publish("small", text_table(150)),
                ids=publish("ids", ids_table()),
            )
        finally:
            publisher.client.close()
            researcher.client.close()
