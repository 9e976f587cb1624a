"""Fixtures for the reliability suite (RELIABILITY.md faults and attacks):
skips when strace or root is missing, and the `slow` marker for the kill
loops. The FlowLoom roots come from tests/conftest.py (fl, fb_bin)."""
import os

import pytest

from relhelpers import strace_skip_reason


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long fault-injection loop (deselect with -m 'not slow')")


_STRACE_SKIP = strace_skip_reason()


@pytest.fixture
def need_strace():
    if _STRACE_SKIP:
        pytest.skip(_STRACE_SKIP)


@pytest.fixture
def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (tmpfs mounts)")
