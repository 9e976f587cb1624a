"""What long commands show on stderr while they work (issue 9, point 9): the
one progress bar of backup, recover and verify (bytes done / total, rate,
ETA), only on request when stderr is not a terminal and always ending
before the report; and the notice, at once, that a command waits for a
session lock held by someone else."""
import fcntl
import os
import pty
import re
import select
import subprocess
import threading
import time

import pytest

NOW = 1764558900
MIB = 1024 * 1024

# "write    [#####.....]  42%  12.0 MiB / 28.6 MiB  310 MiB/s  ETA 0:01"
BAR = re.compile(r"^(?P<phase>\S+(?: \S+)?) +\[[#.]{30}\] +(?P<pct>\d+)%  "
                 r"(?P<done>[\d.]+ [KMG]?i?B) / (?P<total>[\d.]+ [KMG]?i?B)  "
                 r"(?P<rate>[\d.]+ [KMG]?i?B/s|-- MiB/s)  ETA (?P<eta>\d+:\d\d(?::\d\d)?|--:--)$")
# A step whose size is not known yet (the scan).
UNSIZED = re.compile(r"^\S+(?: \S+)? +\.\.\.$")


def big_session(fl, sid="S1", mib=24):
    """A session of a few tens of MiB: incompressible, so every step moves
    real bytes."""
    sdir = fl.sessions / sid
    (sdir / "artifacts").mkdir(parents=True, exist_ok=True)
    rng = fl.rng
    for i in range(3):
        (sdir / "artifacts" / f"blob{i}.bin").write_bytes(rng.randbytes(mib * MIB // 3))
    (sdir / "state.json").write_text('{"step": 1}\n')
    (sdir / "metadata.json").write_text('{"name": "big"}\n')
    return sdir


def run_merged(fl, *args, env=None):
    """Runs the CLI with stdout and stderr into one pipe, as a terminal
    would show them; stderr alone is run again separately when needed."""
    proc = subprocess.run([str(fl.bin)] + [str(a) for a in args], cwd=str(fl.root),
                          env=fl.env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=120)
    return proc.returncode, proc.stdout.decode()


def bars(err):
    """The progress lines of err, each checked against the bar's format."""
    out = []
    for line in err.splitlines():
        m = BAR.match(line)
        if m:
            out.append(m)
        else:
            assert UNSIZED.match(line), f"not a progress line: {line!r}"
    return out


def check_bar(err, phases):
    """err (stderr alone) holds only progress lines, ends with a newline,
    has no terminal control, shows a rate and an ETA, and each phase in
    phases ends at 100%."""
    assert err.endswith("\n"), repr(err[-200:])
    assert "\r" not in err and "\x1b" not in err, "terminal control in a log"
    found = bars(err)
    assert found, err
    assert any(m["rate"] != "-- MiB/s" for m in found), err
    assert all(m["eta"] for m in found)
    for phase in phases:
        last = [m for m in found if m["phase"] == phase]
        assert last, f"no {phase!r} line in {err!r}"
        assert last[-1]["pct"] == "100" and last[-1]["done"] == last[-1]["total"], err
        assert last[-1]["eta"] == "0:00"
    return found


def check_ends_before_report(merged, first_report_line):
    """In the merged output the report starts on a line of its own after
    the last progress line."""
    at = merged.index(first_report_line)
    assert at > 0 and merged[at - 1] == "\n", repr(merged[:at + 40])
    assert BAR.search(merged[at:]) is None and "[####" not in merged[at:], merged[at:]


def test_backup_progress_in_a_log(fl):
    big_session(fl)
    r = fl.run("backup", "S1", "full", "--progress", env={"FLOWLOOM_NOW": str(NOW)})
    assert r.rc == 0, r
    found = check_bar(r.err, ["write", "validate"])
    phases = [m["phase"] for m in found]
    assert phases.index("write") < phases.index("validate")
    assert r.out.startswith("Backup ")

    rc, merged = run_merged(fl, "backup", "S1", "full", "--progress",
                            env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert rc == 0, merged
    check_ends_before_report(merged, "Backup ")


def test_recover_progress_in_a_log(fl, tmp_path):
    big_session(fl)
    fl.backup("full", now=NOW)
    r = fl.run("recover", "S1", "latest", "--target", tmp_path / "out", "--progress")
    assert r.rc == 0, r
    found = check_bar(r.err, ["extract"])
    extract = [m for m in found if m["phase"] == "extract"]
    assert extract[-1]["total"] == "24.0 MiB", extract[-1].group(0)

    # Into the session: the safety backup's steps are named as its own.
    rc, merged = run_merged(fl, "recover", "S1", "latest", "--progress",
                            env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert rc == 0, merged
    check_ends_before_report(merged, "Recovered ")
    phases = [m["phase"] for m in map(BAR.match, merged.splitlines()) if m]
    assert "extract" in phases and "safety write" in phases, merged
    assert phases.index("extract") < phases.index("safety write")


def test_verify_progress_in_a_log(fl):
    big_session(fl)
    a = fl.backup("full", now=NOW)
    b = fl.backup("full", now=NOW + 60)
    r = fl.run("verify", "S1", "--progress")
    assert r.rc == 0, r
    found = check_bar(r.err, ["verify"])
    # One bar for the session: the archives of both backups.
    stored = a["stored_bytes"] + b["stored_bytes"]
    assert found[-1]["total"] == f"{stored / MIB:.1f} MiB", found[-1].group(0)
    assert len({m["total"] for m in found}) == 1

    rc, merged = run_merged(fl, "verify", "S1", "--progress")
    assert rc == 0, merged
    check_ends_before_report(merged, "OK ")


@pytest.mark.parametrize("args", [
    ("backup", "S1", "full"),
    ("verify", "S1"),
    ("recover", "S1", "latest"),
])
def test_no_bar_unless_asked_when_not_a_terminal(fl, args):
    big_session(fl)
    fl.backup("full", now=NOW)
    env = {"FLOWLOOM_NOW": str(NOW + 60)}
    r = fl.run(*args, env=env)
    assert r.rc == 0, r
    assert r.err == "", r.err
    # --no-progress wins over --progress given before it; --quiet and
    # --json stay quiet on stderr unless --progress asks.
    for extra in (["--progress", "--no-progress"], ["--quiet"], ["--json"]):
        r = fl.run(*args, *extra, env=env)
        assert r.rc == 0, r
        assert r.err == "", (extra, r.err)
    r = fl.run(*args, "--quiet", "--progress", env=env)
    assert r.rc == 0, r
    assert bars(r.err), r.err
    assert r.out == "" or args[0] == "verify", r.out


def test_bar_on_a_terminal_is_cleared_before_the_report(fl):
    """On a terminal the bar is one line redrawn in place and erased before
    the report, which starts at the beginning of a line."""
    big_session(fl)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(fl.bin), "backup", "S1", "full", "--progress"],
                            cwd=str(fl.root), env=fl.env({"FLOWLOOM_NOW": str(NOW)}),
                            stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the child side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode()
    assert "\r\x1b[K" in text and re.search(r"write +\[[#.]{30}\]", text), repr(text[:300])
    at = text.index("Backup ")
    assert text[:at].endswith("\r\x1b[K"), repr(text[max(0, at - 100):at + 10])
    assert "\x1b" not in text[at:]


# ---- waiting for the session lock ----

def hold_lock(path, ready, release, host="testhost"):
    """Holds the session lock as another command would, its "pid host" line
    written for the waiter's message."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {host}\n".encode(), 0)
    ready.set()
    release.wait(30)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class HeldLock:
    def __init__(self, fl, sid="S1"):
        self.path = fl.store / sid / ".lock"
        self.ready, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=hold_lock,
                                       args=(self.path, self.ready, self.release))

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join()


def run_timed(fl, *args):
    """Runs the CLI, reading stderr as it comes: [(seconds since start, line)],
    the exit status and stdout."""
    t0 = time.monotonic()
    proc = subprocess.Popen([str(fl.bin)] + [str(a) for a in args], cwd=str(fl.root),
                            env=fl.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    lines, buf = [], b""
    fd = proc.stderr.fileno()
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, "no end of stderr within 30 s"
        data = os.read(fd, 4096)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            lines.append((time.monotonic() - t0, line.decode()))
    out = proc.stdout.read().decode()
    rc = proc.wait(timeout=30)
    return lines, rc, out, time.monotonic() - t0


def test_backup_says_at_once_that_it_waits_for_the_lock(fl1):
    fl1.backup("full", now=NOW)
    with HeldLock(fl1):
        lines, rc, out, took = run_timed(fl1, "backup", "full", "--wait", "2")
    assert rc == 4, lines
    want = (f"flowloom-backup: waiting for the lock of session S1 (held by pid {os.getpid()} "
            f"on host testhost; up to 2 s, --wait to change)")
    assert lines[0][1] == want, lines
    assert lines[0][0] < 1.0, f"the notice came after {lines[0][0]:.2f} s"
    assert took >= 1.9
    assert "is busy" in lines[-1][1] and lines[-1][0] >= 1.9, lines
    assert len(lines) == 2, lines


def test_quiet_waits_silently(fl1):
    fl1.backup("full", now=NOW)
    with HeldLock(fl1):
        lines, rc, out, took = run_timed(fl1, "backup", "full", "--wait", "1", "--quiet")
    assert rc == 4
    assert [l for _, l in lines if "waiting" in l] == []
    assert len(lines) == 1 and "is busy" in lines[0][1], lines


@pytest.mark.parametrize("args", [
    ("cleanup", "S1"),
    ("forget", "S1", "latest"),
    ("recover", "S1", "latest"),
])
def test_every_locking_command_says_it_waits(fl1, args):
    fl1.backup("full", now=NOW)
    fl1.backup("full", now=NOW + 60)
    with HeldLock(fl1):
        lines, rc, out, took = run_timed(fl1, *args, "--wait", "1")
    assert rc == 4, lines
    waiting = [(t, l) for t, l in lines if "waiting for the lock of session S1" in l]
    assert len(waiting) == 1, lines
    assert f"(held by pid {os.getpid()} on host testhost; up to 1 s, --wait to change)" in \
        waiting[0][1]


def test_a_free_lock_or_no_wait_says_nothing(fl1):
    fl1.backup("full", now=NOW)
    r = fl1.run("backup", "full", "--wait", "5", env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0 and "waiting" not in r.err, r
    with HeldLock(fl1):
        r = fl1.run("backup", "full", "--wait", "0")
    assert r.rc == 4 and "waiting" not in r.err, r
