"""The whole story in Chromium: a researcher signs in with their key file, finds the dataset and
requests access; the publisher approves (the grant signed in the page); the researcher sees the
grant; the publisher revokes it and reads the audit log. The statements the browser signed are
then checked with the Python verifier, byte for byte against what the SDK would sign."""

from __future__ import annotations

import base64
from pathlib import Path

from playwright.sync_api import Browser, expect

from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import (
    AccessGrant,
    AccessRequest,
    Envelope,
    Revocation,
    canonical_bytes,
    parse_canonical,
    sign_envelope,
    utc_now,
)
from ostraca.protocol_spec.verify import open_grant, verify_request, verify_revocation

from ..client.client_helpers import Identity
from .browser_helpers import Visitor


def _researcher_requests(ada: Visitor, screens: Path) -> None:
    ada.goto("/")
    ada.page.get_by_label("Search", exact=True).fill("corpus")
    ada.page.get_by_role("button", name="Search").click()
    expect(ada.page.locator("#count")).to_have_text("1 dataset")
    ada.screenshot(screens, "catalog")
    ada.page.get_by_role("link", name="acme/books").click()
    expect(ada.page.get_by_role("heading", level=1)).to_have_text("acme/books")
    expect(ada.page.locator("#terms")).to_contain_text("Research use only.")
    ada.page.get_by_label("Purpose").fill("Train a small LM for my thesis")
    ada.page.get_by_label("I have read and accept the terms above").check()
    ada.page.get_by_role("button", name="Sign and send the request").click()
    expect(ada.message).to_contain_text("Request sent")
    expect(ada.message).to_contain_text("status pending")
    ada.screenshot(screens, "card")


def _publisher_approves(lab: Visitor, screens: Path) -> None:
    lab.goto("/publisher")
    card = lab.page.locator("#inbox li").filter(has_text="ada asks for acme/books")
    expect(card).to_contain_text("Train a small LM for my thesis")
    card.get_by_label("text", exact=True).check()
    card.get_by_label("Up to version").fill("1")
    lab.screenshot(screens, "publisher-inbox")
    card.get_by_role("button", name="Sign and approve").click()
    expect(lab.message).to_contain_text("Approved: grant")
    expect(lab.page.locator("#inbox-empty")).to_be_visible()
    expect(lab.page.locator("#grants tbody tr")).to_contain_text("active")


def _check_signed_statements(researcher: Identity, publisher: Identity) -> None:
    [request] = researcher.client.list_requests()
    [grant] = researcher.client.list_grants()
    assert request.status == "granted"
    assert grant.columns == ["text"]
    assert grant.max_version == 1
    now = utc_now()
    for item, model, key in (
        (request, AccessRequest, researcher.key),
        (grant, AccessGrant, publisher.key),
    ):
        stored = canonical_bytes(item.envelope)
        envelope = Envelope.from_json(stored)
        # The payload is the SDK's own canonical form of the statement, and signing it with the
        # same key in Python gives the very same envelope (Ed25519 is deterministic).
        statement = model.from_json_obj(parse_canonical(envelope.payload))
        assert statement.to_payload() == envelope.payload
        assert sign_envelope(model.PAYLOAD_TYPE, envelope.payload, [key]).to_json() == stored
    verify_request(
        Envelope.from_dict(request.envelope), requester_key=researcher.key.public, now=now
    )
    opened = open_grant(
        Envelope.from_dict(grant.envelope), publisher_keys={publisher.keyid: publisher.key.public}
    )
    assert opened.statement.grantee == researcher.keyid
    assert opened.statement.request == request.request_id


def _publisher_revokes_and_audits(lab: Visitor, screens: Path, researcher: Identity) -> None:
    lab.goto("/publisher")
    row = lab.page.locator("#grants tbody tr").first
    row.get_by_label("Reason for revoking").fill("Project ended")
    row.get_by_role("button", name="Revoke").click()
    expect(lab.message).to_contain_text("Revoked grant")
    expect(lab.page.locator("#grants tbody tr").first).to_contain_text("revoked")
    expect(lab.page.get_by_label("Dataset", exact=True)).to_have_value("acme/books")
    lab.page.get_by_role("button", name="Show events").click()
    kinds = lab.page.locator("#audit tbody tr td:nth-child(2)")
    # key_grant: the data keys of the encrypted version, escrowed to the publisher at publish,
    # then wrapped to the researcher by the page that approved.
    expect(kinds).to_have_text(["publish", "key_grant", "request", "grant", "key_grant", "revoke"])
    lab.screenshot(screens, "audit")
    lab.page.get_by_label("Kind", exact=True).select_option("revoke")
    lab.page.get_by_role("button", name="Show events").click()
    expect(lab.page.locator("#audit tbody tr")).to_have_count(1)
    expect(lab.page.locator("#audit tbody tr")).to_contain_text("Project ended")
    lab.page.get_by_label("Kind", exact=True).select_option("")
    lab.page.get_by_label("Principal (key id starts with)").fill(researcher.keyid[:10])
    lab.page.get_by_role("button", name="Show events").click()
    expect(kinds).to_have_text(["request"])
    lab.page.get_by_label("Principal (key id starts with)").fill("")
    lab.page.get_by_label("From (UTC)").fill("2999-01-01T00:00")
    lab.page.get_by_role("button", name="Show events").click()
    expect(lab.page.locator("#audit-count")).to_have_text("0 events")


def _never_sent(person: Visitor, identity: Identity) -> None:
    """No request body carried the private key, in any encoding."""
    pem = identity.key.to_pem().decode()
    der = base64.b64decode("".join(pem.splitlines()[1:-1]))
    seed = der[-32:]
    secrets = [pem.splitlines()[1], base64.b64encode(seed).decode(), seed.hex()]
    assert len(person.sent) >= 3
    assert not [s for s in secrets for body in person.sent if s in body]


def test_request_approve_see_revoke_audit(
    browser: Browser,
    registry: str,
    publisher: Identity,
    researcher: Identity,
    books: PublishResult,
    screens: Path,
) -> None:
    with Visitor(browser, registry) as ada, Visitor(browser, registry) as lab:
        ada.sign_in(researcher.home / "identity.pem")
        ada.screenshot(screens, "signin")
        _researcher_requests(ada, screens)
        lab.sign_in(publisher.home / "identity.pem")
        _publisher_approves(lab, screens)
        ada.goto("/account")
        expect(ada.page.locator("#my-requests tbody tr")).to_contain_text("granted")
        expect(ada.page.locator("#my-grants tbody tr")).to_contain_text("active")
        ada.screenshot(screens, "account")
        _check_signed_statements(researcher, publisher)
        _publisher_revokes_and_audits(lab, screens, researcher)
        ada.goto("/account")
        expect(ada.page.locator("#my-grants tbody tr")).to_contain_text("revoked")
        [grant] = publisher.client.list_grants()
        assert grant.revocation is not None
        revocation = Envelope.from_dict(grant.revocation)
        assert Revocation.from_json_obj(parse_canonical(revocation.payload)).reason == (
            "Project ended"
        )
        verify_revocation(revocation, publisher_key=publisher.key.public, now=utc_now())
        for person, identity in ((ada, researcher), (lab, publisher)):
            _never_sent(person, identity)
        assert ada.outside_requests() == []
        assert lab.outside_requests() == []
        assert any(u.endswith("/static/sign.js") for u in lab.requested)
