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

What a check costs is almost all the registry's (an authenticated request: token, database,
the grant's JSON; about 3 ms of its CPU against 0.7 ms of the trainer's). The registry logs every
revocation in the transaction that stores it (LOG.md 11, R1), so while its log has not grown
since the grant was last found unrevoked, the grant cannot have been revoked since: a check
then reads only the log's size from the public checkpoint (about half the cost) and checks
G10–G11 locally. When the log has grown — any statement at all — the grant is asked for as
before, so a busy registry pays one small request more per check.
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
from ostraca.protocol_spec.checkpoint import Checkpoint
from ostraca.protocol_spec.errors import UnavailableError
from ostraca.protocol_spec.note import Note

ACCESS_ENDED: tuple[type[OstracaError], ...] = (RevokedError, ExpiredError)
"""The errors that mean the grant no longer holds: the run stops, with a checkpoint."""

DEFAULT_CHECK_SECONDS = 60.0


class RegistryGrantCheck:
    """Check the grant ``version`` was opened with now: ask the registry about it unless its
    log has not grown since it was last found unrevoked (see the module docstring); raises
    ``RevokedError`` or ``ExpiredError`` when it no longer holds."""

    def __init__(
        self, client: RegistryClient, version: VerifiedVersion, *, owns_client: bool = False
    ) -> None:
        self.client = client
        self.version = version
        self._owns_client = owns_client
        self._quiet_at: int | None = None  # the log's size when the grant was last unrevoked
        self.asked = 0
        """How many checks asked the registry about the grant (the others read the log size)."""

    def __call__(self) -> None:
        grant = self.version.grant  # verified when the source opened: only G10–G12 can change
        size = self._log_size()
        revoked = False
        if size is None or size != self._quiet_at:
            revoked = self.client.get_grant(grant.digest).revoked
            self.asked += 1
        check_grant_window(grant.statement, grant_id=grant.digest, now=utc_now(), revoked=revoked)
        self._quiet_at = size

    def _log_size(self) -> int | None:
        """The size of the registry's log now, from its checkpoint (``None`` when that cannot be
        read). Unverified: it only decides whether to ask about the grant, and the registry's
        answer to that is its word either way."""
        try:
            note = self.client.transport.send("GET", "/v1/log/checkpoint").content
            return Checkpoint.from_text(Note.from_bytes(note).text).size
        except UnavailableError:
            raise
        except OstracaError:
            return None

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
