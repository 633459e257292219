"""Revocation while training: the grant is re-checked with the registry in the background.

A streamed source checks the grant at each shard boundary, but a shard can last hundreds of
steps. So the trainer also asks the registry about its grant every ``grant_check_every``
seconds (default 60) on a daemon thread (:class:`GrantWatch`), which the loop consults once per
step without waiting on it. The check (:class:`RegistryGrantCheck`) asks the registry about the
grant the source verified when it opened and runs the protocol's checks of what can change since
(SPEC 5.2, G10–G12) at the current time, with the registry's revocation status: a revoked grant
raises ``RevokedError`` (G12), an expired one ``ExpiredError`` (G11). Those two end the run; any
other failure (the registry unreachable for a while) leaves it running — every shard the stream
hands out is still checked.

A pulled copy (``--from-dir``) is checked once before training when the registry is reachable
(:func:`online_check`), and then watched the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ostraca.client.api import RegistryClient
from ostraca.client.config import ClientConfig
from ostraca.client.keystore import KeyFileError
from ostraca.client.stream import VerifiedVersion
from ostraca.protocol_spec import (
    ExpiredError,
    OstracaError,
    RevokedError,
    check_grant_window,
    utc_now,
)
from ostraca.protocol_spec.errors import UnavailableError

ACCESS_ENDED: tuple[type[OstracaError], ...] = (RevokedError, ExpiredError)
"""The errors that mean the grant no longer holds: the run stops, with a checkpoint."""

DEFAULT_CHECK_SECONDS = 60.0


class RegistryGrantCheck:
    """Ask the registry for the grant ``version`` was opened with and verify it now; raises
    ``RevokedError`` or ``ExpiredError`` when it no longer holds."""

    def __init__(
        self, client: RegistryClient, version: VerifiedVersion, *, owns_client: bool = False
    ) -> None:
        self.client = client
        self.version = version
        self._owns_client = owns_client

    def __call__(self) -> None:
        grant = self.version.grant  # verified when the source opened: only G10–G12 can change
        item = self.client.get_grant(grant.digest)
        check_grant_window(
            grant.statement, grant_id=grant.digest, now=utc_now(), revoked=item.revoked
        )

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def online_check(version: VerifiedVersion, config: ClientConfig) -> RegistryGrantCheck | str:
    """A check of a pulled copy's grant against the registry of ``config``, run once now
    (raising when access ended); or why it could not be run (``"offline"``, …)."""
    try:
        client = RegistryClient(config)
    except OstracaError as exc:
        return f"no registry client: {exc.message}"
    check = RegistryGrantCheck(client, version, owns_client=True)
    try:
        check()
    except UnavailableError:
        check.close()
        return "offline"
    except KeyFileError:
        check.close()
        return f"no identity key at {config.identity_path} to ask the registry with"
    except BaseException:
        check.close()
        raise
    return check


class GrantWatch:
    """Runs ``check`` every ``interval`` seconds on a daemon thread while the block runs.

    :attr:`ended` is the access error a check raised (``None`` while access holds); reading it
    never waits. Other failures are kept in :attr:`last_failure` and the watch goes on.
    """

    def __init__(self, check: Callable[[], None], *, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the grant check interval must be positive")
        self._check = check
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ostraca-grant", daemon=True)
        self.ended: OstracaError | None = None
        self.last_failure: Exception | None = None
        self.checks = 0

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._check()
            except ACCESS_ENDED as exc:
                self.ended = exc
                return
            except Exception as exc:  # a failed check is not a revocation
                self.last_failure = exc
            self.checks += 1

    def __enter__(self) -> GrantWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)  # a check in flight ends by itself (a daemon thread)
