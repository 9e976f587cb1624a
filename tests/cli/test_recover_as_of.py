"""`recover` restores the session as it stood at the backup (issue 9, points 1
and 7): an incremental comes back with its base full and the incrementals
before it, the report names them, --only keeps the old behaviour, a gone
base is exit 3 naming --only, and an interrupted recover removes its staging
dir and leaves the session unchanged."""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import pytest

from fbhelpers import tree_snapshot

NOW = 1764558900
STAGING = re.compile(r"^\.restore-S1-[0-9a-f]{16}$")


def golden_copy(src, dst):
    r = subprocess.run(["cp", "-a", "--", str(src), str(dst)], capture_output=True)
    assert r.returncode == 0, r.stderr
    return dst


def staging_dirs(fl):
    return [n for n in os.listdir(fl.sessions) if n.startswith(".restore-")]


def full_then_incremental(fl1):
    """The issue's session: a full backup, work on the state, an
    incremental (the newest backup)."""
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    (sdir / "state.json").write_text('{"step": 18, "status": "running"}\n')
    (sdir / "state" / "plan.json").write_text('{"todo": ["b"], "done": ["a"]}')
    incr = fl1.backup("incremental", now=NOW + 60)
    return sdir, full["id"], incr["id"]


def test_issue9_recover_after_rm_rf_brings_artifacts_and_logs_back(fl1, tmp_path):
    sdir, full, incr = full_then_incremental(fl1)
    golden = golden_copy(sdir, tmp_path / "golden")
    shutil.rmtree(sdir / "artifacts")
    shutil.rmtree(sdir / "logs")

    r = fl1.run("recover", env={"FLOWLOOM_NOW": str(NOW + 120)})
    assert r.rc == 0, r
    assert f"Recovered backup {incr} (incremental) of session S1" in r.out
    assert f"  from:           {full} + 1 incremental ({incr})\n" in r.out
    assert re.search(r"changes: +1[0-9] added, 0 modified, 0 removed", r.out), r.out
    # artifacts/ and logs/ are back, byte for byte, with modes, mtimes, the
    # symlink and the hardlink; the state is the incremental's
    d = subprocess.run(["diff", "-r", "--no-dereference", str(golden), str(sdir)],
                       capture_output=True)
    assert d.returncode == 0, d.stdout
    assert tree_snapshot(sdir) == tree_snapshot(golden)
    a = os.lstat(sdir / "artifacts" / "blob.dat")
    b = os.lstat(sdir / "artifacts" / "blob-hardlink.dat")
    assert a.st_ino == b.st_ino
    assert (sdir / "state.json").read_text() == '{"step": 18, "status": "running"}\n'
    # the safety backup holds the broken state; recovering the incremental
    # again changes nothing
    safety = [b for b in fl1.index()["backups"] if b["note"] == f"pre-recover {incr}"]
    assert len(safety) == 1 and safety[0]["id"] in r.out
    j = fl1.run("recover", incr, "--dry-run", "--json").json()
    assert j["changes"] == [] and j["sources"] == [full, incr]


def test_json_names_the_sources_and_dry_run_lists_what_comes_back(fl1):
    sdir, full, incr = full_then_incremental(fl1)
    shutil.rmtree(sdir / "logs")
    before = tree_snapshot(sdir)
    r = fl1.run("recover", "--dry-run")
    assert r.rc == 0, r
    assert "added: logs/run.log" in r.out and "added: logs/tool-output.txt" in r.out
    assert f"from:           {full} + 1 incremental ({incr})" in r.out
    assert tree_snapshot(sdir) == before
    j = fl1.run("recover", "S1", incr, "--json", env={"FLOWLOOM_NOW": str(NOW + 120)}).json()
    assert j["id"] == incr and j["type"] == "incremental" and j["only"] is False
    assert j["sources"] == [full, incr]
    assert {"path": "logs/run.log", "kind": "added"} in j["changes"]
    assert (sdir / "logs" / "run.log").exists()
    # a full backup is its own only source
    j = fl1.run("recover", full, "--dry-run", "--json").json()
    assert j["sources"] == [full] and j["type"] == "full"


def test_incremental_changing_a_file_twice_and_older_bases(fl1):
    """As of each backup: the newest version up to it; an incremental of an
    older full is never mixed in."""
    sdir = fl1.sessions / "S1"
    f1 = fl1.backup("full", now=NOW)["id"]
    (sdir / "state.json").write_text('{"v": 1}\n')
    i1 = fl1.backup("incremental", now=NOW + 10)["id"]
    (sdir / "state.json").write_text('{"v": 2}\n')
    (sdir / "only-in-i2.json").write_text('{}\n')
    i2 = fl1.backup("incremental", now=NOW + 20)["id"]
    (sdir / "only-in-i2.json").unlink()
    f2 = fl1.backup("full", now=NOW + 30)["id"]
    (sdir / "state.json").write_text('{"v": 3}\n')
    i3 = fl1.backup("incremental", now=NOW + 40)["id"]

    def as_of(bid, sources, state, extra):
        target = fl1.root.parent / ("as-of-" + bid)
        r = fl1.run("recover", bid, "--target", target, "--json")
        assert r.rc == 0, r
        assert r.json()["sources"] == sources
        assert (target / "state.json").read_text() == state
        assert (target / "only-in-i2.json").exists() == extra
        assert (target / "logs" / "run.log").exists()

    as_of(i1, [f1, i1], '{"v": 1}\n', False)
    as_of(i2, [f1, i1, i2], '{"v": 2}\n', True)  # not deleted by later incrementals
    as_of(i3, [f2, i3], '{"v": 3}\n', False)      # i2 belongs to f1
    as_of(f2, [f2], '{"v": 2}\n', False)


def test_only_restores_just_the_incremental_and_removes_nothing(fl1):
    sdir, full, incr = full_then_incremental(fl1)
    shutil.rmtree(sdir / "logs")
    (sdir / "state.json").write_text("broken")
    (sdir / "extra.txt").write_text("mine")
    r = fl1.run("recover", "--only", "--json", env={"FLOWLOOM_NOW": str(NOW + 120)})
    assert r.rc == 0, r
    j = r.json()
    assert j["only"] is True and j["sources"] == [incr] and j["summary"]["removed"] == 0
    assert (sdir / "state.json").read_text() == '{"step": 18, "status": "running"}\n'
    assert not (sdir / "logs").exists()
    assert (sdir / "extra.txt").read_text() == "mine"


def test_incremental_whose_base_is_gone_is_exit_3_naming_only(fl1):
    sdir, full, incr = full_then_incremental(fl1)
    shutil.rmtree(fl1.store / "S1" / full)
    shutil.rmtree(sdir / "logs")
    (sdir / "state.json").write_text("broken")
    fl1.run("list")  # the index is rebuilt without the full
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    want = (f"flowloom-backup: session S1: backup {incr} is an incremental whose base full "
            f"backup {full} is gone (removed or never taken): recover it alone with --only")
    for extra in ([], ["--dry-run"], ["--json"]):
        r = fl1.run("recover", "S1", *extra)
        assert r.rc == 3, r
        assert r.err.strip() == want, r
        assert r.out == ""
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before
    assert staging_dirs(fl1) == []
    r = fl1.run("recover", "S1", "--only", env={"FLOWLOOM_NOW": str(NOW + 120)})
    assert r.rc == 0, r
    assert (sdir / "state.json").read_text() == '{"step": 18, "status": "running"}\n'


def test_incremental_taken_before_any_full_is_exit_3(fl):
    sdir = fl.session("S1")
    incr = fl.backup("incremental", now=NOW)["id"]
    r = fl.run("recover", "--session", "S1", incr)
    assert r.rc == 3, r
    assert (f"backup {incr} is an incremental with no base full backup (none had been taken "
            "before it): recover it alone with --only") in r.err


# ---- interruption (issue 9, point 7) ----

needs_strace = pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")


def slow_recover(fl, args):
    """recover run under strace with every write(2) delayed by 0.3 s, so the
    extraction takes seconds; strace itself ignores SIGINT and SIGTERM (-I3
    is its default with -o), which then reach the traced processes only."""
    cmd = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=write",
           "-e", "inject=write:delay_enter=300000",
           str(fl.bin), "--root", str(fl.root), *args]
    return subprocess.Popen(cmd, env=fl.env(traced=True), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for_staging(fl, proc):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if any(STAGING.match(n) for n in staging_dirs(fl)):
            return
        time.sleep(0.01)
    pytest.fail("the recover never started extracting")


def recover_pid(strace_pid):
    """The traced flowloom-backup: strace's child."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                stat = pathlib.Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == strace_pid and "flowloom-backup" in stat:
                return int(d)
        time.sleep(0.01)
    pytest.fail("no flowloom-backup under strace")


@needs_strace
@pytest.mark.parametrize("how", ["SIGINT to the process group", "SIGTERM to the recover only"])
def test_interrupted_recover_removes_its_staging_and_leaves_the_session(fl1, how):
    sdir, full, incr = full_then_incremental(fl1)
    shutil.rmtree(sdir / "artifacts")
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    proc = slow_recover(fl1, ["recover", "S1"])
    try:
        wait_for_staging(fl1, proc)
        time.sleep(0.3)
        if how.startswith("SIGINT"):
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            os.kill(recover_pid(proc.pid), signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    want_rc = 130 if how.startswith("SIGINT") else 143
    assert proc.returncode == want_rc, (out, err)
    assert err.decode().strip().splitlines()[-1] == \
        "flowloom-backup: interrupted: the session is unchanged", err
    assert out == b""
    assert staging_dirs(fl1) == []
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before
    # and the next recover, uninterrupted, does the work
    r = fl1.run("recover", "S1", "--no-safety-backup")
    assert r.rc == 0, r
    assert (sdir / "artifacts" / "blob.dat").exists()
