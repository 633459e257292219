"""Approving some column groups in the browser (SPEC 2.6, 3.3): Chromium, a real registry over
HTTP, the SDK on the researcher's side.

The page names the groups the ticked columns make up, exactly as the SDK's ``approve`` does (the
same canonical payload, so the same Ed25519 signature), refuses columns that are not whole
groups with the SDK's reason, and wraps the data keys of the granted groups only: the researcher
streams the granted group and gets neither the other group's bytes nor its key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest
from playwright.sync_api import Browser, expect

from ostraca.client.encryption import identity_encryption_key
from ostraca.client.keyflow import key_grants
from ostraca.client.publishing import PublishResult
from ostraca.client.stream import open_dataset
from ostraca.protocol_spec import (
    AccessGrant,
    Envelope,
    MalformedError,
    ScopeError,
    canonical_bytes,
    parse_canonical,
    sign_envelope,
    utc_now,
)
from ostraca.protocol_spec.crypto import DataKey
from ostraca.protocol_spec.enckeys import open_key_grant, verify_key_grant
from ostraca.protocol_spec.wire import GrantItem

from ..client.client_helpers import Identity, sample_table
from ..client.test_column_groups import _blobs, _bytes_served
from .browser_helpers import Visitor

DATASET = "acme/books"
GROUPS = {"scores": ["score"]}
"""Two column groups: ``default`` (``id``, ``text``) and ``scores``."""


@pytest.fixture
def lab(browser: Browser, registry: str, publisher: Identity) -> Iterator[Visitor]:
    """The publisher, signed in in Chromium."""
    with Visitor(browser, registry) as person:
        person.sign_in(publisher.home / "identity.pem")
        yield person


def _approve_in_page(lab: Visitor, columns: list[str]) -> None:
    lab.goto("/publisher")
    card = lab.page.locator("#inbox li").filter(has_text=f"ada asks for {DATASET}")
    expect(card.locator("fieldset.columns legend")).to_have_text(
        ["Columns (none ticked: every column)", "Group default", "Group scores"]
    )
    for column in columns:
        card.get_by_label(column, exact=True).check()
    card.get_by_role("button", name="Sign and approve").click()


def _statement(item: GrantItem) -> AccessGrant:
    return AccessGrant.from_json_obj(parse_canonical(Envelope.from_dict(item.envelope).payload))


def _opened_keys(
    publisher: Identity, researcher: Identity, grant_id: str
) -> dict[tuple[int, str], DataKey]:
    """Every data key the KeyGrant of ``grant_id`` wraps (verified as the publisher's, for this
    grant and grantee), opened with the researcher's derived encryption key."""
    [item] = [i for i in key_grants(researcher.client, DATASET) if i.grant_id == grant_id]
    envelope = Envelope.from_dict(item.envelope)
    keys = {publisher.keyid: publisher.key.public}
    statement = verify_key_grant(envelope, publisher_keys=keys, now=utc_now()).statement
    assert (statement.grant, statement.grantee) == (grant_id, researcher.keyid)
    return open_key_grant(statement, private=identity_encryption_key(researcher.key))


def test_one_group_approved_in_the_page_streams_that_group_only(
    lab: Visitor,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    tables = [sample_table(1500), sample_table(300, seed=1)]
    results = [
        publish_table(tables[0], shard_bytes=65536, chunk_bytes=65536, column_groups=GROUPS),
        publish_table(tables[1], column_groups=GROUPS),
    ]
    researcher.client.request_access(DATASET, purpose="the scores only")
    _approve_in_page(lab, ["score"])
    expect(lab.message).to_contain_text("with 2 data keys wrapped to their encryption key")
    [grant] = researcher.client.list_grants()
    assert (grant.columns, grant.groups) == (["score"], ["scores"])
    assert _statement(grant).spec_version == 2
    # Only the granted group's keys were wrapped: none of `default`, of either version.
    assert sorted(_opened_keys(publisher, researcher, grant.grant_id)) == [
        (1, "scores"),
        (2, "scores"),
    ]
    for version, table in enumerate(tables, start=1):
        with open_dataset(DATASET, version=version, client=researcher.client) as ds:
            assert ds.columns == ["score"]
            assert ds.to_table().equals(table.select(["score"]))
            with pytest.raises(ScopeError):
                ds.to_table(columns=["text"])
    scores = _blobs(results[0], "scores") | _blobs(results[1], "scores")
    assert _bytes_served(publisher, grant.grant_id)
    # The registry itself refuses the other group's bytes to the grantee: none is ever served.
    for digest in sorted(_blobs(results[0], "default") | _blobs(results[1], "default")):
        with pytest.raises(ScopeError, match="column group 'default'"):
            researcher.client.get_blob(digest, dataset=DATASET)
    assert set(_bytes_served(publisher, grant.grant_id)) <= scores


def _sdk_twin(publisher: Identity, researcher: Identity, expires: datetime) -> GrantItem:
    """The SDK's approval of a new request by the same researcher, with the page's inputs."""
    request = researcher.client.request_access(DATASET, purpose="the same, from the SDK")
    with pytest.raises(MalformedError, match="not whole column groups") as refused:
        publisher.client.approve(request.request_id, expires=expires, columns=["id"])
    assert "columns id are not whole column groups of acme/books version 1" in str(refused.value)
    return publisher.client.approve(request.request_id, expires=expires, columns=["id", "text"])


def test_the_pages_group_grant_is_the_sdks(
    lab: Visitor,
    publisher: Identity,
    researcher: Identity,
    publish_table: Callable[..., PublishResult],
) -> None:
    table = sample_table(400)
    publish_table(table, column_groups=GROUPS)
    researcher.client.request_access(DATASET, purpose="the text, not the scores")
    # Part of a group cannot be granted (the registry serves whole groups): the SDK's reason.
    _approve_in_page(lab, ["id"])
    expect(lab.message).to_contain_text(
        "columns id are not whole column groups of acme/books version 1 "
        "(groups: default: id, text; scores: score)"
    )
    expect(lab.message).to_contain_text("Nothing was granted")
    assert publisher.client.list_grants() == []
    _approve_in_page(lab, ["text", "id"])
    expect(lab.message).to_contain_text("with 1 data key wrapped to their encryption key")
    [page] = publisher.client.list_grants()
    sdk = _sdk_twin(publisher, researcher, page.expires)
    assert (page.columns, page.groups) == (["id", "text"], ["default"])
    ours, theirs = _statement(page), _statement(sdk)
    same = theirs.model_copy(
        update={"request": ours.request, "not_before": ours.not_before, "created": ours.created}
    )
    payload = Envelope.from_dict(page.envelope).payload
    assert b'"groups":["default"]' in payload
    assert b'"spec_version":2' in payload
    assert same.to_payload() == payload
    signed = sign_envelope(AccessGrant.PAYLOAD_TYPE, payload, [publisher.key])
    assert signed.to_json() == canonical_bytes(page.envelope)
    # The same keys wrapped (the sealing itself is randomized): the default group's only.
    page_keys = _opened_keys(publisher, researcher, page.grant_id)
    sdk_keys = _opened_keys(publisher, researcher, sdk.grant_id)
    assert sorted(page_keys) == sorted(sdk_keys) == [(1, "default")]
    assert page_keys[1, "default"].raw == sdk_keys[1, "default"].raw
    with open_dataset(DATASET, client=researcher.client, columns=["id", "text"]) as ds:
        assert ds.to_table().equals(table.select(["id", "text"]))
