"""Bad input gets a clear error, the SPEC exit code, and changes nothing:
session ids, missing root/session, config files, options, the lock."""
import fcntl
import json
import os
import resource
import subprocess
import threading
import time

import pytest

from fbhelpers import FlowLoom

NOW = 1764558900

BAD_IDS = ["../x", "a/b", "", ".hidden", "s" * 200, "-rf", "..", "/etc", "a b", "new\nline",
           "caf\u00e9"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_session_id_is_refused_before_touching_anything(fl1, bad):
    before = sorted(os.listdir(fl1.flowloom))
    for args in (["backup", "--session", bad, "full"], ["backup", f"--session={bad}"],
                 ["list", "--session", bad], ["show", "--session", bad, "latest"],
                 ["verify", "--session", bad]):
        r = fl1.run(*args)
        assert r.rc == 2, (args, r)
        assert "session id" in r.err, (args, r)
    if not bad.startswith("-"):
        for args in (["backup", bad, "full"], ["list", bad], ["verify", bad]):
            r = fl1.run(args[0], "--", *args[1:])
            assert r.rc == 2, (args, r)
    # nothing was created: not even the store directory
    assert not fl1.store.exists()
    assert sorted(os.listdir(fl1.flowloom)) == before


def test_bad_session_id_from_environment_or_file(fl):
    fl.session("S1")
    r = fl.run("backup", "full", env={"FLOWLOOM_SESSION": "../etc"})
    assert r.rc == 2 and "session id" in r.err, r
    (fl.flowloom / "current_session").write_text("a/b\n")
    r = fl.run("backup", "full")
    assert r.rc == 2 and "session id" in r.err, r
    assert not fl.store.exists()


def test_missing_session_is_not_found(fl1):
    for args in (["backup", "nosuch", "full"], ["list", "nosuch"], ["verify", "nosuch"],
                 ["show", "nosuch", "latest"]):
        r = fl1.run(*args)
        assert r.rc == 3, (args, r)
        assert "nosuch" in r.err and "not found" in r.err
    assert not fl1.store.exists()


def test_no_flowloom_root_is_not_found_with_a_message(tmp_path, fb_bin):
    fl = FlowLoom(tmp_path / "root", fb_bin)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    r = fl.run("backup", "S1", "full", cwd=empty)
    assert r.rc == 3, r
    assert ".flowloom" in r.err and ("--root" in r.err or "FLOWLOOM_ROOT" in r.err)
    r = fl.run("list", "--root", str(empty), cwd=empty)
    assert r.rc == 3 and str(empty) in r.err, r
    assert list(empty.iterdir()) == []


def test_root_discovery_walks_up_and_honours_env_and_option(fl1):
    deep = fl1.sessions / "S1" / "logs"
    r = fl1.run("backup", "full", "-q", cwd=deep)
    assert r.rc == 0, r
    elsewhere = fl1.root.parent
    r = fl1.run("list", "S1", "-q", cwd=elsewhere, env={"FLOWLOOM_ROOT": str(fl1.root)})
    assert r.rc == 0 and len(r.out.split()) == 1, r
    r = fl1.run("list", "S1", "-q", "-C", str(fl1.root), cwd=elsewhere)
    assert r.rc == 0 and len(r.out.split()) == 1, r
    r = fl1.run("--root", str(fl1.root), "list", "S1", "-q", cwd=elsewhere)
    assert r.rc == 0 and len(r.out.split()) == 1, r


def test_no_current_session_names_both_ways(fl):
    fl.session("S1")
    r = fl.run("backup", "full")
    assert r.rc == 3, r
    assert "FLOWLOOM_SESSION" in r.err and "current_session" in r.err


def test_config_invalid_json_is_a_usage_error(fl1):
    (fl1.flowloom / "backup.json").write_text('{"retention": {"keep_full": 3,}')
    r = fl1.run("backup", "S1", "full")
    assert r.rc == 2, r
    assert "backup.json" in r.err
    assert fl1.backup_ids("S1") == []


@pytest.mark.parametrize("cfg,key", [
    ({"retention": {"keep_full": "ten"}}, "keep_full"),
    ({"retention": {"max_age_days": -1}}, "max_age_days"),
    ({"compression": {"level": 99}}, "level"),
    ({"compression": {"frame_size": 1.5}}, "frame_size"),
    ({"incremental": {"include": "*.json"}}, "include"),
    ({"retention": []}, "retention"),
])
def test_config_wrong_type_names_the_key(fl1, cfg, key):
    (fl1.flowloom / "backup.json").write_text(json.dumps(cfg))
    r = fl1.run("backup", "S1", "full")
    assert r.rc == 2, r
    assert key in r.err
    assert fl1.backup_ids("S1") == []


def test_config_unknown_key_is_a_warning(fl1):
    (fl1.flowloom / "backup.json").write_text(
        json.dumps({"retention": {"keep_full": 5}, "colour": "blue"}))
    r = fl1.run("backup", "S1", "full")
    assert r.rc == 0, r
    assert "warning" in r.err and "colour" in r.err
    assert len(fl1.backup_ids("S1")) == 1


def test_config_changes_the_incremental_set_and_compression(fl1):
    (fl1.flowloom / "backup.json").write_text(json.dumps({
        "incremental": {"include": ["logs/"]},
        "compression": {"level": 5, "frame_size": 65536, "threads": 1}}))
    out = fl1.backup("incremental", now=NOW)
    m = fl1.manifest("S1", out["id"])
    assert sorted(e["path"] for e in m["entries"]) == ["logs", "logs/run.log",
                                                       "logs/tool-output.txt"]
    assert m["archive"]["level"] == 5 and m["archive"]["frame_size"] == 65536
    assert m["archive"]["frames"] > 1


@pytest.mark.parametrize("args", [
    ["backup", "--bogus"], ["list", "--nope"], ["show", "-x", "latest"], ["verify", "--files"],
    ["backup", "--wait", "soon"], ["backup", "--wait", "-1"], ["backup", "--type", "partial"],
    ["backup", "S1", "full", "note", "extra"], ["show"], ["show", "S1", "not an id"],
    ["list", "S1", "S2"], ["backup", "--note"], ["frobnicate"], [],
])
def test_usage_errors_exit_2_with_a_hint(fl1, args):
    r = fl1.run(*args)
    assert r.rc == 2, r
    assert r.err.startswith("flowloom-backup: ")
    assert not fl1.store.exists()


def test_help_on_every_command_and_version(fl1):
    for cmd in ("backup", "list", "list-backups", "show", "verify", "mount", "umount"):
        for flag in ("--help", "-h"):
            r = fl1.run(cmd, flag)
            assert r.rc == 0, (cmd, r)
            assert r.out.startswith("Usage: flowloom-backup ") and r.err == ""
    r = fl1.run("--help")
    assert r.rc == 0 and "Commands:" in r.out and "verify" in r.out
    r = fl1.run("help", "backup")
    assert r.rc == 0 and "--no-verify" in r.out
    r = fl1.run("--version")
    assert r.rc == 0 and r.out == "flowloom-backup 0.1.0\n"
    # help never touches the store
    assert not fl1.store.exists()


def hold_lock(path, ready, release):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    release.wait(30)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def test_backup_while_the_lock_is_held_is_busy(fl1):
    first = fl1.backup("full", now=NOW)
    lock = fl1.store / "S1" / ".lock"
    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=hold_lock, args=(lock, ready, release))
    t.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        r = fl1.run("backup", "S1", "full", "--wait", "0")
        assert time.monotonic() - started < 5
        assert r.rc == 4, r
        assert "busy" in r.err.lower() and "S1" in r.err
        assert fl1.backup_ids("S1") == [first["id"]]
        # readers take no lock
        assert fl1.run("list", "S1").rc == 0
        assert fl1.run("verify", "S1").rc == 0
    finally:
        release.set()
        t.join()


def test_backup_waits_for_the_lock(fl1):
    fl1.backup("full", now=NOW)
    lock = fl1.store / "S1" / ".lock"
    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=hold_lock, args=(lock, ready, release))
    t.start()
    assert ready.wait(10)
    timer = threading.Timer(0.7, release.set)
    timer.start()
    try:
        r = fl1.run("backup", "S1", "full", "--wait", "10", "-q", env={"FLOWLOOM_NOW": str(NOW)})
        assert r.rc == 0, r
    finally:
        release.set()
        t.join()
        timer.cancel()
    assert len(fl1.backup_ids("S1")) == 2


def test_efbig_is_an_error_not_a_crash(fl1):
    # RLIMIT_FSIZE below the archive size: write() fails with EFBIG because
    # the tool ignores SIGXFSZ; nothing is published.
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([str(fl1.bin), "backup", "S1", "full"], cwd=str(fl1.root),
                          env=fl1.env(), capture_output=True, preexec_fn=limit, timeout=60)
    assert proc.returncode == 5, proc
    assert b"too large" in proc.stderr.lower() or b"efbig" in proc.stderr.lower()
    assert fl1.backup_ids("S1") == []
    leftovers = [p.name for p in (fl1.store / "S1").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_symlinked_session_directory_is_refused(fl, tmp_path):
    real = tmp_path / "real-session"
    real.mkdir()
    (real / "a.json").write_text("{}")
    os.symlink(str(real), fl.sessions / "S")
    r = fl.run("backup", "S", "full")
    assert r.rc == 2, r
    assert "symlink" in r.err and "S" in r.err
    assert fl.backup_ids("S") == []


def test_mount_and_umount_usage_errors(fl1, tmp_path):
    r = fl1.run("mount")
    assert r.rc == 2 and "mountpoint" in r.err, r
    r = fl1.run("umount")
    assert r.rc == 2 and "mountpoint" in r.err, r
    r = fl1.run("umount", "a", "b")
    assert r.rc == 2, r
    not_mounted = tmp_path / "plain-dir"
    not_mounted.mkdir()
    r = fl1.run("umount", str(not_mounted))
    assert r.rc == 3, r
    assert r.err == f"flowloom-backup: {not_mounted}: not mounted\n", r
