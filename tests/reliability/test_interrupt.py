"""Interruption (SPEC "Backup", issue 9 point 7): a backup stopped by
SIGINT, SIGTERM or SIGHUP before it publishes removes its temporary work,
says `interrupted: nothing was published` on a line of its own (no progress
bar left open) and exits 128 + the signal, the store and the index exactly
as before; stopped once it is publishing, it finishes the index update and
succeeds. And the leftovers of a killed recover: `cleanup` shows them in a
dry run and removes them, except while the session lock is held or a
running recover holds its staging dir.

The backups are slowed down with strace (a delay at each write, or at the
index rename), so that the signal lands where the test says."""
import fcntl
import json
import os
import pathlib
import pty
import re
import signal
import subprocess
import threading
import time

import pytest

from relhelpers import (index_bytes, leftovers, listed, small_session, store_files,
                        write_config)

MESSAGE = "flowloom-backup: interrupted: nothing was published"
STAGING_RE = re.compile(r"^\.restore-S-[0-9a-f]{16}$")


def tracee_pid(strace_pid, timeout=10):
    """The flowloom-backup process strace started (its child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except (OSError, IndexError, ValueError):
                continue
            if ppid == strace_pid and argv0.endswith(b"flowloom-backup"):
                return int(d)
        time.sleep(0.01)
    raise AssertionError("the traced flowloom-backup did not start")


def wait_for(cond, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def big_session(fl):
    sdir = small_session(fl)
    with open(sdir / "artifacts" / "big.bin", "wb") as f:
        f.write(os.urandom(4 * 1024 * 1024))
    return sdir


def archive_growing(fl):
    """A .tmp-* dir whose archive already holds data: the backup is in the
    middle of writing it."""
    for name in leftovers(fl):
        a = fl.store / "S" / name / "archive.tar.zst"
        if a.exists() and a.stat().st_size > 0:
            return True
    return False


class Traced:
    """A command under strace; stderr to a pipe, or to a pty (tty=True) as a
    user's terminal, read by a thread so a redrawn bar never blocks it."""

    def __init__(self, fl, args, strace, tty=False):
        env = fl.env()
        argv = strace + [str(fl.bin)] + [str(a) for a in args]
        self.chunks = []
        if tty:
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(argv, cwd=str(fl.root), env=env,
                                         stdout=subprocess.PIPE, stderr=slave,
                                         stdin=subprocess.DEVNULL)
            os.close(slave)
            self.reader = threading.Thread(target=self._drain, args=(master,))
        else:
            self.proc = subprocess.Popen(argv, cwd=str(fl.root), env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL)
            self.reader = threading.Thread(target=self._drain_pipe)
        self.reader.start()
        self.pid = tracee_pid(self.proc.pid)

    def _drain(self, fd):
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO once the last writer closed the pty
                break
            if not data:
                break
            self.chunks.append(data)
        os.close(fd)

    def _drain_pipe(self):
        for data in iter(lambda: self.proc.stderr.read1(65536), b""):
            self.chunks.append(data)

    def wait(self, timeout=60):
        out = self.proc.stdout.read()
        rc = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return rc, out.decode(errors="replace"), b"".join(self.chunks)


def slow_writes(tmp_path):
    return ["strace", "-f", "-qq", "-o", str(tmp_path / "strace.log"),
            "-e", "trace=write", "-e", "inject=write:delay_enter=20000"]


@pytest.fixture
def prepared(fl, need_strace):
    write_config(fl)
    big_session(fl)
    first = fl.backup("full", sid="S")["id"]
    return fl, first


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_before_publish_leaves_nothing(prepared, tmp_path, sig):
    fl, first = prepared
    idx, files = index_bytes(fl), store_files(fl)
    t = Traced(fl, ["backup", "S", "full", "--progress"], slow_writes(tmp_path))
    wait_for(lambda: archive_growing(fl), what="the archive to grow")
    os.kill(t.pid, sig)
    rc, out, err = t.wait()
    text = err.decode(errors="replace")
    assert rc == 128 + sig, (rc, text)
    assert text.endswith(MESSAGE + "\n"), text[-300:]
    assert text.count("interrupted") == 1
    assert out == ""
    assert leftovers(fl) == []
    assert index_bytes(fl) == idx and store_files(fl) == files
    assert listed(fl) == [first]
    # the lock went with the process
    with open(fl.store / "S" / ".lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_ctrl_c_on_a_terminal_ends_the_bar_first(prepared, tmp_path):
    fl, first = prepared
    idx, files = index_bytes(fl), store_files(fl)
    t = Traced(fl, ["backup", "S", "full", "--progress"], slow_writes(tmp_path), tty=True)
    wait_for(lambda: archive_growing(fl) and b"%" in b"".join(t.chunks),
             what="the bar on the terminal")
    os.kill(t.pid, signal.SIGINT)
    rc, out, err = t.wait()
    assert rc == 130, err[-300:]
    # The bar was drawn in place, then cleared; what follows the last clear
    # is the message alone, on its own line (the tty turns \n into \r\n).
    assert b"\r\x1b[K" in err
    tail = err.rsplit(b"\x1b[K", 1)[1]
    assert tail == MESSAGE.encode() + b"\r\n", err[-300:]
    assert leftovers(fl) == [] and index_bytes(fl) == idx and store_files(fl) == files


def test_signal_during_the_index_update_finishes_the_backup(prepared, tmp_path):
    fl, first = prepared
    # The publish rename is a renameat2 (RENAME_NOREPLACE); the index commit
    # is the first renameat in the session's store dir: it waits 1.5 s.
    strace = ["strace", "-f", "-qq", "-o", str(tmp_path / "strace.log"),
              "-P", str(fl.store / "S"), "-e", "trace=renameat",
              "-e", "inject=renameat:delay_enter=1500000"]
    t = Traced(fl, ["backup", "S", "full"], strace)
    before = set(listed(fl))

    def published():
        return any(n != first and not n.startswith(".") and (fl.store / "S" / n).is_dir()
                   for n in os.listdir(fl.store / "S"))
    wait_for(published, what="the publish rename")
    os.kill(t.pid, signal.SIGINT)
    rc, out, err = t.wait()
    text = err.decode(errors="replace")
    assert rc == 0, text
    assert "interrupted after the backup was published: it is complete and in the index; " \
           "retention was not applied" in text
    assert "retention:  not applied (interrupted)" in out
    now = listed(fl)
    assert set(now) - before and len(now) == 2, now
    assert leftovers(fl) == []
    assert fl.run("verify", "--session", "S").rc == 0
    assert '"index.json"' in (tmp_path / "strace.log").read_text()


# ---- leftovers of interrupted recovers ----

def staging_dirs(fl):
    return sorted(n for n in os.listdir(fl.sessions) if n.startswith(".restore-"))


@pytest.fixture
def killed_recover(prepared, tmp_path):
    """A recover of S killed (SIGKILL, its whole process group) in the middle
    of its extraction: its staging dir is left in .flowloom/sessions."""
    fl, first = prepared
    argv = ["strace", "-f", "-qq", "-o", str(tmp_path / "strace.log"),
            "-e", "trace=write", "-e", "inject=write:delay_enter=20000",
            str(fl.bin), "recover", "S", first, "--no-safety-backup"]
    proc = subprocess.Popen(argv, cwd=str(fl.root), env=fl.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: staging_dirs(fl) and
                 any(os.scandir(fl.sessions / staging_dirs(fl)[0])),
                 what="the staging dir to fill")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    [name] = staging_dirs(fl)
    assert STAGING_RE.match(name), name
    return fl, name


def test_cleanup_shows_and_removes_a_killed_recovers_staging_dir(killed_recover):
    fl, name = killed_recover
    shown = f".flowloom/sessions/{name}"
    r = fl.run("cleanup", "S", "--dry-run")
    assert r.rc == 0, r
    assert f"Would clear leftover: {shown}" in r.out.splitlines(), r
    r = fl.run("cleanup", "S", "--dry-run", "--json")
    assert r.rc == 0 and r.json()["leftovers"] == [shown], r
    assert staging_dirs(fl) == [name]  # a dry run changes nothing

    # held session lock: cleanup is busy and touches nothing
    with open(fl.store / "S" / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = fl.run("cleanup", "S", "--wait", "0")
    assert r.rc == 4, r
    assert staging_dirs(fl) == [name]

    # a staging dir a running recover holds (its flock) is not a leftover
    fd = os.open(fl.sessions / name, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = fl.run("cleanup", "S", "--dry-run", "--json")
        assert r.rc == 0 and r.json()["leftovers"] == [], r
        r = fl.run("cleanup", "S")
        assert r.rc == 0, r
        assert staging_dirs(fl) == [name]
    finally:
        os.close(fd)

    r = fl.run("cleanup", "S")
    assert r.rc == 0, r
    assert f"removed {fl.sessions}/{name} left by an interrupted recover" in r.err, r
    assert staging_dirs(fl) == []
    assert (fl.sessions / "S" / "metadata.json").exists()  # the session itself untouched


def test_backup_clears_recover_leftovers_of_its_session_only(prepared):
    fl, first = prepared
    mine = fl.sessions / ".restore-S-0123456789abcdef"
    other = fl.sessions / ".restore-T-0123456789abcdef"
    for d in (mine, other):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f").write_text("partial\n")
        os.chmod(d / "sub", 0o500)
    fl.backup("incremental", sid="S")
    assert not mine.exists()
    assert other.exists()
    os.chmod(other / "sub", 0o700)
