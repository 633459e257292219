"""The byte strings a principal signs to register its key and to log in (SPEC.md section 6).

Each starts with its own domain-separation prefix, so neither can be confused with the other or
with a DSSE statement signature (whose signed bytes start with ``DSSEv1``).
"""

from __future__ import annotations

import re

from .canonical import canonical_bytes
from .errors import MalformedError

LOGIN_PREFIX = b"ostraca-login-v1\n"
REGISTER_PREFIX = b"ostraca-register-v1\n"
NONCE_RE = re.compile(r"[0-9a-f]{64}")


def login_message(nonce: str) -> bytes:
    """Bytes signed to log in: the prefix and the server's single-use hex nonce."""
    if not NONCE_RE.fullmatch(nonce):
        raise MalformedError("login nonce must be 64 lowercase hex characters")
    return LOGIN_PREFIX + nonce.encode("ascii")


def registration_message(*, public_key: str, name: str, kind: str, affiliation: str) -> bytes:
    """Bytes signed to register a key: proves possession and binds the profile to the key."""
    profile = {"affiliation": affiliation, "kind": kind, "name": name, "public_key": public_key}
    return REGISTER_PREFIX + canonical_bytes(profile)
