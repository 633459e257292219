"""The rotation walk (SPEC.md 5.5): from the keys a verifier trusts for a principal, follow the
KeyRotation statements that verify, and learn which keys sign for it now.

Pure: the caller fetches or stores the envelopes; time is passed in. A registry only relays a
rotation, it cannot make one: every link is verified with the key it rotates away from (and
the new key's signature, K6) before it is followed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .envelope import Envelope
from .errors import OstracaError
from .keys import VerifyKey
from .models import KeyRotation
from .verify import Verified, verify_key_rotation


@dataclass(frozen=True, slots=True)
class RotatedKey:
    """A key rotated away from: it verifies only what it signed up to ``until``."""

    key: VerifyKey
    until: datetime
    """The ``created`` time of the rotation away from it."""
    successor: str
    """The key it handed its authority to."""


@dataclass(frozen=True, slots=True)
class KeyWalk:
    """Where the walk ended."""

    active: dict[str, VerifyKey]
    """The keys that sign new statements now."""
    rotated: dict[str, RotatedKey] = field(default_factory=dict)
    """The keys this walk rotated away from."""
    links: list[Verified[KeyRotation]] = field(default_factory=list)
    """The rotations followed, in the order followed (each after the one before it)."""


def walk_rotations(
    trusted: Mapping[str, VerifyKey],
    rotations: Iterable[Envelope],
    *,
    now: datetime,
    retired: Collection[str] = (),
) -> KeyWalk:
    """Follow every rotation in ``rotations`` that verifies with a current key, until none does.

    Starts from ``trusted``; a rotation that verifies with none of the current keys is skipped
    (it may be someone else's, or forged). A rotation to a key that is current already, or in
    ``retired`` (keys known to be rotated away from), is not followed: authority never goes
    back to a key that gave it away.
    """
    chain = list(rotations)
    active = dict(trusted)
    rotated: dict[str, RotatedKey] = {}
    links: list[Verified[KeyRotation]] = []
    changed = True
    while changed:
        changed = False
        for env in chain:
            for old_id, old_key in list(active.items()):
                try:
                    link = verify_key_rotation(env, old_key=old_key, now=now)
                except OstracaError:
                    continue
                new = link.statement.new_key.to_verify_key()
                if new.keyid in active or new.keyid in retired or new.keyid in rotated:
                    continue
                del active[old_id]
                active[new.keyid] = new
                rotated[old_id] = RotatedKey(
                    key=old_key, until=link.statement.created, successor=new.keyid
                )
                links.append(link)
                changed = True
    return KeyWalk(active=active, rotated=rotated, links=links)
