"""Shared fixtures for the integration tests (tests/cli, tests/fuse): the
built binaries ($FB_BUILD_DIR, else ./build) and FlowLoom roots generated in a
fresh temporary directory per test. Helpers live in fbhelpers.py."""
import os
import pathlib
import shutil
import subprocess

import pytest

from fbhelpers import FlowLoom, build_dir


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    """Each test's own $XDG_CACHE_HOME: the mount keeps its manifest cache
    there (fb_manifest_cache.h), never in the home of whoever runs the
    tests, and no test sees another's entries."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="session")
def fb_bin():
    path = build_dir() / "cli" / "flowloom-backup"
    if not path.exists():
        pytest.fail(f"{path} is not built (run meson setup/compile, or set FB_BUILD_DIR)")
    return path


@pytest.fixture(scope="session")
def fbfs_bin():
    path = build_dir() / "fs" / "flowloom-backupfs"
    if not path.exists():
        pytest.fail(f"{path} is not built (run meson setup/compile, or set FB_BUILD_DIR)")
    return path


@pytest.fixture
def fl(tmp_path, fb_bin):
    """A FlowLoom root with no sessions yet."""
    return FlowLoom(tmp_path / "root", fb_bin)


@pytest.fixture
def fl1(fl):
    """A FlowLoom root with one realistic session S1 (also the current one)."""
    fl.session("S1")
    (fl.flowloom / "current_session").write_text("S1\n")
    return fl


@pytest.fixture
def shared_tmp():
    """A world-traversable temporary directory (for runs as another user:
    pytest's own basetemp is private to root)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="fbtest-", dir="/tmp")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    subprocess.run(["chmod", "-R", "u+rwX", d], check=False)
    shutil.rmtree(d, ignore_errors=True)
