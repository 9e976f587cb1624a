"""Safe mount and umount (issue 9, items 2 and 3), replayed on real mounts:
`umount` stops only a flowloom-backupfs mount (a tmpfs or a bind mount is
left mounted, exit 2, naming it) and says "not mounted" (exit 3); `mount`
refuses a directory that is already a mount point (exit 2, no second daemon,
one entry in /proc/self/mountinfo); flowloom-backupfs run directly refuses
the same mountpoints with the same messages; `mount -f` says that it serves
and how to stop it. Every mount made here is removed in teardown, and every
daemon started here is ended by its PID."""
import os
import selectors
import signal
import subprocess
import time

import pytest

from fusehelpers import Mount, daemon_pids_for, is_mounted, pid_alive

FSTYPE = "fuse.flowloom-backupfs"


def mounts_at(path):
    """(fstype, source) of every mount on path, from /proc/self/mountinfo."""
    want = os.path.realpath(str(path))
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            mp = fields[4].replace("\\040", " ").replace("\\134", "\\")
            if mp == want:
                sep = fields.index("-")
                out.append((fields[sep + 1], fields[sep + 2]))
    return out


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def unmount_all(path):
    """Teardown: whatever is still mounted on path (ours or not) goes."""
    for _ in range(5):
        if not is_mounted(path):
            return
        if any(t == FSTYPE for t, _ in mounts_at(path)):
            r = subprocess.run(["fusermount3", "-u", str(path)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(path)], capture_output=True)
        else:
            subprocess.run(["umount", str(path)], capture_output=True)
    assert not is_mounted(path), f"{path} still mounted after teardown"


def end_daemons(pids):
    for pid in pids:
        if not wait_gone(pid, 5):
            os.kill(pid, signal.SIGTERM)
            if not wait_gone(pid, 5):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def tmpfs(tmp_path):
    """A tmpfs of our own at tmp_path/tmpfs, with a file in it."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "none", str(d)], check=True)
    try:
        (d / "marker").write_text("still here\n")
        yield d
    finally:
        unmount_all(d)


def test_umount_leaves_a_tmpfs_mounted(fl1, tmpfs):
    for args in ([tmpfs], ["--lazy", tmpfs]):
        r = fl1.run("umount", *args)
        assert r.rc == 2, (args, r)
        assert r.err == (f"flowloom-backup: {tmpfs}: not a flowloom-backupfs mount: "
                         "tmpfs is mounted there (source none); left mounted\n"), (args, r)
        assert is_mounted(tmpfs)
        assert mounts_at(tmpfs) == [("tmpfs", "none")]
        assert (tmpfs / "marker").read_text() == "still here\n"


def test_mount_on_a_tmpfs_is_refused(fl1, fbfs_bin, tmpfs):
    r = fl1.run("mount", tmpfs)
    assert r.rc == 2, r
    assert r.err == (f"flowloom-backup: mountpoint {tmpfs} is already a mount point: "
                     "tmpfs is mounted there (source none)\n"), r
    assert mounts_at(tmpfs) == [("tmpfs", "none")]
    assert daemon_pids_for(tmpfs) == []
    assert not fl1.store.exists()


def test_a_bind_mount_of_the_same_filesystem_counts(fl1, tmp_path):
    """Same st_dev as its parent: only mountinfo tells it is a mount point."""
    d = tmp_path / "bound"
    d.mkdir()
    (d / "f").write_text("x")
    subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
    try:
        assert os.stat(d).st_dev == os.stat(tmp_path).st_dev
        [(fstype, source)] = mounts_at(d)
        r = fl1.run("umount", d)
        assert r.rc == 2, r
        assert r.err == (f"flowloom-backup: {d}: not a flowloom-backupfs mount: {fstype} is "
                         f"mounted there (source {source}); left mounted\n"), r
        assert is_mounted(d) and (d / "f").read_text() == "x"
        r = fl1.run("mount", d)
        assert r.rc == 2, r
        assert r.err == (f"flowloom-backup: mountpoint {d} is already a mount point: "
                         f"{fstype} is mounted there (source {source})\n"), r
        assert len(mounts_at(d)) == 1
    finally:
        unmount_all(d)


def test_second_mount_on_the_same_directory_is_refused(fl1, fbfs_bin, tmp_path):
    """The user's steps: mount, mount again, umount, umount again."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    store = os.path.realpath(fl1.store)
    r = fl1.run("mount", mnt)
    pids = daemon_pids_for(mnt)
    try:
        assert r.rc == 0, r
        assert len(pids) == 1
        assert mounts_at(mnt) == [(FSTYPE, store)]
        already = (f"mountpoint {mnt} is already a mount point: {FSTYPE} is mounted there "
                   f"(source {store})\n")
        for args in ([mnt], ["-f", mnt]):
            r = fl1.run("mount", *args, timeout=10)
            assert r.rc == 2, (args, r)
            assert r.err == "flowloom-backup: " + already, (args, r)
        # the daemon run directly refuses it the same way
        r = subprocess.run([str(fbfs_bin), "-f", str(fl1.store), str(mnt)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, r
        assert r.stderr == "flowloom-backupfs: " + already, r
        assert mounts_at(mnt) == [(FSTYPE, store)]
        assert daemon_pids_for(mnt) == pids
        assert os.listdir(mnt) == []  # the first mount still answers

        r = fl1.run("umount", mnt)
        assert r.rc == 0, r
        assert r.err == "" and r.out == ""
        assert not is_mounted(mnt)
        assert wait_gone(pids[0])
        r = fl1.run("umount", mnt)
        assert r.rc == 3, r
        assert r.err == f"flowloom-backup: {mnt}: not mounted\n", r
    finally:
        unmount_all(mnt)
        end_daemons(pids)


def test_daemon_refuses_a_file_or_a_missing_mountpoint(fl1, fbfs_bin, tmp_path):
    """flowloom-backupfs run directly: the CLI's rule and messages, one line,
    exit 2, before anything is mounted."""
    state = fl1.sessions / "S1" / "state.json"
    before = state.read_bytes()
    fl1.store.mkdir()
    missing = tmp_path / "nope"
    cases = [(state, f"mountpoint {state} is not a directory (it is a regular file)\n"),
             (missing, f"mountpoint {missing} does not exist\n")]
    for mnt, msg in cases:
        for fg in (["-f"], []):
            r = subprocess.run([str(fbfs_bin)] + fg + [str(fl1.store), str(mnt)],
                               capture_output=True, text=True, timeout=10)
            assert r.returncode == 2, (mnt, fg, r)
            assert r.stderr == "flowloom-backupfs: " + msg, (mnt, fg, r)
            assert "bad options" not in r.stderr
            assert mounts_at(mnt) == []
            assert daemon_pids_for(mnt) == []
    assert state.read_bytes() == before
    assert not missing.exists()
    # --help and --version are not refused for the mountpoint given with them
    for flag, want in (("--help", "cache_size"), ("--version", "flowloom-backupfs")):
        r = subprocess.run([str(fbfs_bin), flag, str(fl1.store), str(state)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and want in r.stdout, r


def read_line(proc, timeout):
    """The first line proc writes on stdout, waiting at most timeout s."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.decode("utf-8", "replace")


def test_mount_f_says_it_serves_and_how_to_stop(fl1, fb_bin, tmp_path):
    mnt = tmp_path / "fg"
    mnt.mkdir()
    store = os.path.realpath(fl1.store)
    proc = subprocess.Popen([str(fb_bin), "mount", "-f", str(mnt)], cwd=str(fl1.root),
                            env=fl1.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        line = read_line(proc, 30)
        m = os.path.realpath(mnt)
        assert line == (f"flowloom-backupfs: serving {store} read-only at {m}; stop with "
                        f"Ctrl-C, 'flowloom-backup umount {m}' or 'fusermount3 -u {m}'\n")
        # the line comes once the mount exists
        assert is_mounted(mnt)
        assert mounts_at(mnt) == [(FSTYPE, store)]
        assert proc.poll() is None
        r = fl1.run("umount", m)
        assert r.rc == 0, r
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == b""
        assert proc.stderr.read() == b""
        assert not is_mounted(mnt)
    finally:
        unmount_all(mnt)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_daemon_f_says_it_serves(populated, mounts):
    m = mounts(populated.store)
    mp = os.path.realpath(m.mnt)
    store = os.path.realpath(populated.store)
    deadline = time.monotonic() + 10
    while "serving" not in m.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert m.log.read_text() == (f"flowloom-backupfs: serving {store} read-only at {mp}; stop "
                                 f"with Ctrl-C, 'flowloom-backup umount {mp}' or "
                                 f"'fusermount3 -u {mp}'\n")


def test_umount_clears_the_mount_of_a_killed_daemon(populated, fbfs_bin, tmp_path):
    """A SIGKILLed daemon leaves a mount that answers ENOTCONN; it is still
    ours, and `umount` removes it."""
    m = Mount(fbfs_bin, populated.store, tmp_path / "dead")
    try:
        m.start(foreground=True)
        m.proc.kill()
        m.proc.wait(timeout=10)
        with pytest.raises(OSError):
            os.listdir(m.mnt)
        assert mounts_at(m.mnt) == [(FSTYPE, os.path.realpath(populated.store))]
        r = populated.fl.run("umount", m.mnt)
        assert r.rc == 0, r
        assert not is_mounted(m.mnt)
    finally:
        m.stop()
