"""Client fixtures. The registry, the two identities and ``publish_table`` are shared with other
test folders and live in ``tests/conftest.py``; what only the client tests use is here."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest

from .client_helpers import sample_table


@pytest.fixture
def make_table() -> Callable[..., pa.Table]:
    return sample_table
