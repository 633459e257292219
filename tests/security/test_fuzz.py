"""Schemathesis over the whole API of a real registry, authenticated: once as a researcher
holding a grant, once as the institution that published the dataset. No 5xx, ever.

Bounded for CI: a few examples per operation (``EXAMPLES``), derandomized (the same cases
every run), no shrinking, no database of past failures. ``DELETE /v1/auth/token`` is left
out: it would log the fuzzer out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core.result import Ok

from ..registry_helpers import Registry
from ..server.server_helpers import Identity

EXAMPLES = 25
SKIP = {("DELETE", "/v1/auth/token")}


def _fuzz(live: Registry, who: Identity) -> list[str]:
    """Every operation, ``EXAMPLES`` cases each, sent with ``who``'s token: the 5xx answers."""
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        check = _checker(live.url, who, failures)
        settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(given(case=operation.as_strategy())(check))()
    return failures


def _checker(url: str, who: Identity, failures: list[str]) -> Callable[..., None]:
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=url, headers=who.headers, timeout=30)
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
            )

    return check


def test_fuzz_as_granted_researcher(live: Registry, granted: Identity) -> None:
    assert _fuzz(live, granted) == []


def test_fuzz_as_institution(live: Registry, institution: Identity, granted: Identity) -> None:
    """The publisher of ``acme/books``, whose researcher holds a grant."""
    assert _fuzz(live, institution) == []
