"""``ostraca rekey``: the latest rows again as the next version, under fresh data keys."""

from __future__ import annotations

import json
from collections.abc import Callable

from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import DatasetManifest

from ..client.client_helpers import Identity
from ..client.stream_helpers import grant_access
from .test_exit_codes import error_line, ostraca


def test_rekey_publishes_the_next_version_under_new_keys(
    publish_table: Callable[..., PublishResult], publisher: Identity, researcher: Identity
) -> None:
    first = publish_table()
    grant_access(publisher.client, researcher.client, "acme/books")
    proc = ostraca(publisher.env(), "rekey", "acme/books", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["dataset"], out["version"]) == ("acme/books", 2)
    assert out["digest"] != first.digest
    assert out["shards"] == len(first.shards)
    # New keys: no blob of version 2 is a blob of version 1 (each version has its own keys).
    env = publisher.client.get_manifest_envelope("acme/books", 2)
    second = DatasetManifest.from_json_obj(json.loads(env.payload))
    assert second.encryption is not None
    assert not {s.sha256 for s in first.shards} & {s.sha256 for s in second.shards}
    # The grant still in force reads version 2 (its keys were wrapped to the grantee).
    with open_dataset("acme/books", version=2, client=researcher.client) as ds:
        assert sum(b.num_rows for b in ds) == first.total_rows
    # A researcher may not rekey someone else's dataset.
    refused = ostraca(researcher.env(), "rekey", "acme/books")
    assert refused.returncode == 1
    assert error_line(refused).startswith("error [")
