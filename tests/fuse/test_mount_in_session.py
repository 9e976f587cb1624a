"""The tool's own mount inside the session (issue 9, point 4, as the user did
it): `flowloom-backup mount` of the backups at a directory of the session,
then `backup full`. The mount is another file system: the backup skips it
with one warning and stores what it stored before (not every earlier backup
again), `diff --live` lists nothing of it, and `recover` into the session
refuses (exit 2) and leaves the mount serving. The mount is removed in
teardown (fusermount3 -u, then -uz) and its daemon ended by its PID."""
import os
import signal
import subprocess
import time

import pytest

from fusehelpers import daemon_pids_for, is_mounted, pid_alive

NOW = 1_790_000_000


def _end(pid):
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def view_in_session(fl1):
    """S1 with one full backup, and the backups mounted by the CLI at
    S1/backups-view."""
    first = fl1.backup("full", now=NOW)
    mnt = fl1.sessions / "S1" / "backups-view"
    mnt.mkdir()
    r = fl1.run("mount", mnt, timeout=30)
    pids = daemon_pids_for(mnt)
    try:
        assert r.rc == 0, r
        assert is_mounted(mnt) and pids, r
        yield fl1, first, mnt
    finally:
        if is_mounted(mnt):
            u = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
            if u.returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        for pid in pids:
            _end(pid)
        assert not is_mounted(mnt)


def test_backup_skips_the_mounted_backups(view_in_session):
    fl, first, mnt = view_in_session
    assert os.listdir(mnt / "S1")  # the earlier backup is visible in the mount
    r = fl.run("backup", "S1", "full", "--json", env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0, r
    assert r.err.count("warning: skipped backups-view: another filesystem is mounted "
                       "there") == 1, r
    out = r.json()
    # Not "12 to 56 files": the same files as before the mount, less nothing.
    assert (out["files"], out["bytes"]) == (first["files"], first["bytes"])
    paths = [e["path"] for e in fl.manifest("S1", out["id"])["entries"]]
    assert not [p for p in paths if p.startswith("backups-view")], paths
    z = subprocess.run(["zstd", "-dc", str(fl.archive("S1", out["id"]))], capture_output=True,
                       check=True)
    names = subprocess.run(["tar", "-t"], input=z.stdout, capture_output=True,
                           check=True).stdout.decode().split()
    assert not [n for n in names if n.startswith("backups-view")], names

    d = fl.run("diff", "S1", out["id"], "--live", "--json")
    assert d.rc == 0, d
    assert d.json()["items"] == []


def test_recover_refuses_and_the_mount_keeps_serving(view_in_session):
    fl, first, mnt = view_in_session
    ids_before = sorted(os.listdir(mnt / "S1"))
    r = fl.run("recover", "S1", first["id"])
    assert r.rc == 2, r
    assert "another filesystem is mounted inside the session directory (backups-view)" in r.err
    assert is_mounted(mnt)
    assert sorted(os.listdir(mnt / "S1")) == ids_before
    assert fl.backup_ids() == [first["id"]]  # no safety backup was taken
