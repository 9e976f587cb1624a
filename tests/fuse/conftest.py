"""Fixtures for the FUSE tests: a store with several sessions and full +
incremental backups written by the real CLI, and mounts of it by the real
daemon (flowloom-backupfs -f, started by PID, always unmounted in teardown).
Skips every test with the reason when /dev/fuse cannot be used."""
import json
import os
import shutil

import pytest

from fusehelpers import FRAME_SIZE, Mount, Store, age_dirs, modify_session


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (large files)")


def _fuse_skip_reason():
    if os.geteuid() != 0:
        return "FUSE tests run as root (mounts and allow_other without fuse.conf)"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
        os.close(fd)
    except OSError as e:
        return f"/dev/fuse cannot be opened: {e}"
    for tool in ("fusermount3", "mountpoint"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


SKIP_REASON = _fuse_skip_reason()


@pytest.fixture(autouse=True)
def _need_fuse():
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)


@pytest.fixture
def mounts(fbfs_bin, tmp_path):
    """Factory: mounts(store, options=..., foreground=...) -> Mount. Every
    mount made through it is torn down after the test, pass or fail."""
    made = []

    def make(store, options=(), foreground=True, name=None):
        mnt = tmp_path / (name or f"mnt{len(made)}")
        m = Mount(fbfs_bin, store, mnt, options)
        made.append(m)
        return m.start(foreground=foreground)

    yield make
    errors = []
    for m in made:
        try:
            m.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, errors


@pytest.fixture
def populated(fl, tmp_path):
    """S1: full, incremental, full; S2: full, incremental; S3: one
    incremental (no full). Small frames (FRAME_SIZE) in every archive."""
    (fl.flowloom / "backup.json").write_text(json.dumps(
        {"compression": {"level": 3, "frame_size": FRAME_SIZE, "threads": 1}}))
    st = Store(fl, tmp_path)
    s1 = fl.session("S1")
    age_dirs(s1)
    st.backup("S1", "full")
    modify_session(s1, 1)
    st.backup("S1", "incremental")
    modify_session(s1, 2)
    st.backup("S1", "full")
    s2 = fl.session("S2", log_bytes=64 * 1024)
    age_dirs(s2)
    st.backup("S2", "full")
    modify_session(s2, 1)
    st.backup("S2", "incremental")
    s3 = fl.session("S3", log_bytes=1024)
    age_dirs(s3)
    st.backup("S3", "incremental")
    return st
