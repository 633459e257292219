"""The background grant check asks the registry about the grant only when the registry's log has
grown since it last found the grant unrevoked (every revocation is a log entry), so a revocation
is still seen by the very next check — on the session's real registry, revoked by the real
publisher."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from ostraca.client.local import open_pulled
from ostraca.client.pull import pull
from ostraca.protocol_spec import ExpiredError, RevokedError, utc_now
from ostraca.trainer.revocation import RegistryGrantCheck

from ..client.client_helpers import make_identity
from .trainer_testlib import TrainerData


def test_a_quiet_log_spares_the_grant_request_and_a_revocation_is_seen_next(
    data: TrainerData, tmp_path: Path
) -> None:
    erin = make_identity(tmp_path, data.registry.url, "erin", "researcher")
    request = erin.client.request_access(data.small.dataset, purpose="a watched run")
    grant = data.publisher.client.approve(request.request_id, expires=utc_now() + timedelta(days=1))
    pull(data.small.dataset, tmp_path / "copy", client=erin.client)
    with erin.client:
        source = open_pulled(tmp_path / "copy", home=erin.home, columns=["text"])
        check = RegistryGrantCheck(erin.client, source)
        check()
        assert check.asked == 1
        check()
        check()
        assert check.asked == 1  # nothing was logged: the grant cannot have been revoked
        # Any statement grows the log (here another researcher's registration): asked again.
        make_identity(tmp_path, data.registry.url, "frank", "researcher").client.close()
        check()
        assert check.asked == 2
        data.publisher.client.revoke(grant.grant_id, reason="project ended")
        with pytest.raises(RevokedError, match="has been revoked"):
            check()
        assert check.asked == 3


def test_expiry_is_seen_without_asking(data: TrainerData, tmp_path: Path) -> None:
    gina = make_identity(tmp_path, data.registry.url, "gina", "researcher")
    request = gina.client.request_access(data.small.dataset, purpose="a short run")
    grant = data.publisher.client.approve(
        request.request_id, expires=utc_now() + timedelta(seconds=3)
    )
    pull(data.small.dataset, tmp_path / "copy", client=gina.client)
    with gina.client:
        source = open_pulled(tmp_path / "copy", home=gina.home, columns=["text"])
        check = RegistryGrantCheck(gina.client, source)
        check()
        time.sleep(max(0.0, (grant.expires - utc_now()).total_seconds()) + 0.1)
        with pytest.raises(ExpiredError):
            check()  # the log stayed quiet: G11 is checked here, without asking
        assert check.asked == 1
