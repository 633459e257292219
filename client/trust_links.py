"""The rotation links a trust store records for a namespace's retired keys (``trust.py``).

A retired key's entry names its successor, the key its verified :class:`KeyRotation` handed its
authority to: a grant by the successor covers what the retired key signed (SPEC.md 5.2 G2). On
first use the registry's claim that a key was rotated is taken only with the rotation itself,
verified with that key (SPEC.md 5.5 K1–K7): the registry relays a rotation, it cannot make one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ostraca.protocol_spec import Envelope, OstracaError, UntrustedKeyError, VerifyKey
from ostraca.protocol_spec.models import TIMESTAMP_FORMAT
from ostraca.protocol_spec.verify import verify_key_rotation


def retired_entry(key: VerifyKey, until: datetime, successor: str | None = None) -> dict[str, Any]:
    """A retired key as the trust file records it."""
    out = {"public": key.b64, "until": until.astimezone(UTC).strftime(TIMESTAMP_FORMAT)}
    if successor is not None:
        out["successor"] = successor
    return out


def first_use_retired(
    offered: Mapping[str, VerifyKey],
    rotated: Sequence[str],
    *,
    fetch: Callable[[], Sequence[Envelope]] | None,
    now: datetime,
    namespace: str,
) -> dict[str, dict[str, Any]]:
    """The trust-file entries of the keys in ``rotated`` (keys of ``offered`` the registry lists
    as rotated), each from a rotation in the relayed chain (``fetch``) that verifies with it,
    preferably one to another key of ``offered``: ``until`` is that rotation's ``created``,
    ``successor`` its new key. A listed rotated key without such a rotation is
    :class:`UntrustedKeyError` (the registry claims a rotation it cannot show)."""
    chain = list(fetch()) if rotated and fetch is not None else []
    out: dict[str, dict[str, Any]] = {}
    for keyid in rotated:
        links = []
        for envelope in chain:
            with contextlib.suppress(OstracaError):  # another key's link, or a forged one
                links.append(verify_key_rotation(envelope, old_key=offered[keyid], now=now))
        if not links:
            raise UntrustedKeyError(
                f"the registry lists key {keyid[:16]}… of namespace '{namespace}' as rotated, "
                "but relays no rotation signed by it",
                hint="this may be an attack; try again later, or pin the namespace's keys by "
                "hand after checking them with the publisher",
            )
        # One to a key the registry lists, if any (a successor it no longer lists grants nothing).
        link = next((x for x in links if x.statement.new_key.keyid in offered), links[0])
        rot = link.statement
        out[keyid] = retired_entry(offered[keyid], rot.created, rot.new_key.keyid)
    return out
