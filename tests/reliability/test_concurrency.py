"""F13, F15, F17: a source file rewritten while it is backed up; two
backups of one session at once; the lock holder killed. A slow backup is
made with strace delaying every write() by 0.2 s, so the lock is held for a
few seconds without a big session."""
import json
import os
import signal
import subprocess
import tarfile
import time

import pytest

from fbhelpers import sha256_bytes
from relhelpers import (KILLED, assert_invariants, leftovers, listed, small_session,
                        write_config)

SLOW = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=write:delay_enter=200000"]


def lock_holder_pid(fl, tracer_pid, timeout=20):
    """Waits until the CLI started under strace (tracer_pid) holds the
    session lock, and returns its pid, read from the lock file and checked to
    be the tracer's child."""
    lock = fl.store / "S" / ".lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.exists() and subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0:
            text = lock.read_text()
            if text.strip():
                pid = int(text.split()[0])
                with open(f"/proc/{pid}/status") as f:
                    ppid = next(int(ln.split()[1]) for ln in f if ln.startswith("PPid:"))
                assert ppid == tracer_pid, (pid, ppid, tracer_pid)
                return pid
        time.sleep(0.05)
    pytest.fail("the slow backup never took the lock")


def start_slow_backup(fl):
    return subprocess.Popen(SLOW + [str(fl.bin), "backup", "--session", "S", "full", "-q"],
                            cwd=str(fl.root), env=fl.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.fixture
def one_full(fl, need_strace):
    write_config(fl)
    small_session(fl)
    return fl, [fl.backup("full", sid="S")["id"]]


def test_f15_second_backup_is_busy_at_once_then_waits(one_full):
    fl, prev = one_full
    slow = start_slow_backup(fl)
    try:
        pid = lock_holder_pid(fl, slow.pid)
        t0 = time.monotonic()
        r = fl.run("backup", "--session", "S", "full", "--wait", "0")
        assert time.monotonic() - t0 < 3, "a busy session must not make --wait 0 wait"
        assert r.rc == 4, r
        assert "busy" in r.err and f"pid {pid}" in r.err and "S" in r.err, r
        # --wait 5: blocks until the holder is done, then succeeds
        waiter = subprocess.Popen([str(fl.bin), "backup", "--session", "S", "full", "-q",
                                   "--wait", "5"], cwd=str(fl.root), env=fl.env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        assert slow.wait(timeout=60) == 0, slow.stderr.read()
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    ids = listed(fl)
    assert len(ids) == 3 and ids[0] == prev[0]
    seqs = [json.loads((fl.store / "S" / i / "manifest.json").read_bytes())["seq"] for i in ids]
    assert seqs == [1, 2, 3]
    assert leftovers(fl) == []
    assert_invariants(fl)


def test_f17_killed_holder_leaves_no_stale_lock(one_full):
    fl, prev = one_full
    slow = start_slow_backup(fl)
    try:
        pid = lock_holder_pid(fl, slow.pid)
        time.sleep(0.5)  # well inside the archive writes
        os.kill(pid, signal.SIGKILL)
        assert slow.wait(timeout=30) in KILLED
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    # the dead holder's note is still in the file; it is only reported
    assert (fl.store / "S" / ".lock").read_text().split()[0] == str(pid)
    assert listed(fl) == prev
    t0 = time.monotonic()
    r = fl.run("backup", "--session", "S", "full", "--wait", "0")
    assert time.monotonic() - t0 < 5
    assert r.rc == 0, r
    assert "left by an interrupted run" in r.err, r
    assert leftovers(fl) == []
    assert len(listed(fl)) == 2
    assert (fl.store / "S" / ".lock").read_text().split()[0] != str(pid)
    assert_invariants(fl)


def test_f13_file_rewritten_during_backup(fl, tmp_path):
    """A writer rewrites artifacts/big (random size and content, O_TRUNC)
    as fast as it can while backups run. Each backup either fails with a
    message naming the file, publishing nothing, or succeeds with an archive
    whose stored bytes are exactly what the manifest hashes."""
    write_config(fl)
    sdir = small_session(fl)
    big = sdir / "artifacts" / "big"
    big.write_bytes(os.urandom(2 << 20))
    writer = subprocess.Popen(
        ["bash", "-c", 'while :; do head -c $((RANDOM * 64)) /dev/urandom > "$1"; done',
         "writer", str(big)])
    outcomes = []
    try:
        for i in range(6):
            before = listed(fl) if (fl.store / "S").exists() else []
            r = fl.run("backup", "--session", "S", "full", "-q")
            if r.rc != 0:
                assert r.rc == 5, r
                assert r.err.startswith("flowloom-backup: ") and "big" in r.err, r
                assert listed(fl) == before and leftovers(fl) == [], r
                outcomes.append("failed: " + r.err.strip().splitlines()[-1][-80:])
                continue
            bid = listed(fl)[-1]
            assert fl.run("verify", "--session", "S", bid).rc == 0
            m = json.loads((fl.store / "S" / bid / "manifest.json").read_bytes())
            entry = next(e for e in m["entries"] if e["path"] == "artifacts/big")
            x = tmp_path / f"x{i}"
            x.mkdir()
            subprocess.run(["tar", "--zstd", "-xf", str(fl.archive("S", bid)), "-C", str(x),
                            "artifacts/big"], check=True)
            data = (x / "artifacts" / "big").read_bytes()
            assert len(data) == entry["size"]
            assert sha256_bytes(data) == entry["sha256"], "manifest hash != stored bytes"
            # the tar header size is the stored size (GNU tar would fail otherwise, but be explicit)
            with subprocess.Popen(["zstd", "-dc", str(fl.archive("S", bid))],
                                  stdout=subprocess.PIPE) as z:
                with tarfile.open(fileobj=z.stdout, mode="r|") as t:
                    sizes = {ti.name: ti.size for ti in t}
            assert sizes["artifacts/big"] == entry["size"]
            outcomes.append("ok" + (" (warned: changed)" if "changed" in r.err else ""))
    finally:
        writer.kill()
        writer.wait()
    print("F13 outcomes:", outcomes)
    assert_invariants(fl)
