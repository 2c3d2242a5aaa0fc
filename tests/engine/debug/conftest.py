"""The re-run tests record sessions through the API: its in-process fixture from tests/api."""

from tests.api.conftest import api

__all__ = ["api"]
