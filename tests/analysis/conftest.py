"""Fixtures for the analysis tests: a fresh in-memory store per test."""

from collections.abc import Iterator

import pytest

import tracer as t


@pytest.fixture
def store() -> Iterator[t.Store]:
    with t.Store(":memory:") as s:
        yield s
