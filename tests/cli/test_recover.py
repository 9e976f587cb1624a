"""`recover` (alias `restore`): round trips into the session directory with
its safety backup, --only touching only the backup's files, --target, the
dry-run change list, and refusals (damaged backup, non-empty target, missing
backup, busy) that leave everything as it was."""
import fcntl
import json
import os
import shutil
import stat
import subprocess
import threading

import pytest

from fbhelpers import sha256_file, tree_snapshot

NOW = 1764558900
DAY = 86400


def golden_copy(src, dst):
    """cp -a: bytes, modes, nanosecond mtimes, symlinks and hardlinks."""
    r = subprocess.run(["cp", "-a", "--", str(src), str(dst)], capture_output=True)
    assert r.returncode == 0, r.stderr
    return dst


def diff_r(a, b):
    return subprocess.run(["diff", "-r", "--no-dereference", str(a), str(b)],
                          capture_output=True)


def mutate(sdir):
    """Modify, chmod, delete, add, retarget and touch things."""
    (sdir / "state.json").write_text('{"step": 99}\n')
    os.chmod(sdir / "artifacts" / "models" / "weights.bin", 0o600)
    (sdir / "logs" / "tool-output.txt").unlink()
    (sdir / "artifacts" / "new.bin").write_bytes(b"new" * 1000)
    (sdir / "newdir" / "deep").mkdir(parents=True)
    (sdir / "newdir" / "deep" / "f").write_text("f")
    os.unlink(sdir / "artifacts" / "latest-weights")
    os.symlink("blob.dat", sdir / "artifacts" / "latest-weights")
    os.utime(sdir / "metadata.json", ns=(1_600_000_000_000_000_001, 1_600_000_000_000_000_001))
    shutil.rmtree(sdir / "state")


def backups_by_note(fl, sid="S1"):
    return {b["note"]: b for b in fl.index(sid)["backups"]}


def test_full_round_trip_with_safety_backup(fl1, tmp_path):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", "golden", now=NOW)
    golden = golden_copy(sdir, tmp_path / "golden")
    mutate(sdir)
    mutated = tree_snapshot(sdir)
    assert mutated != tree_snapshot(golden)

    r = fl1.run("recover", "S1", full["id"], env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0, r
    # the session directory equals the backup again, down to the metadata
    d = diff_r(golden, sdir)
    assert d.returncode == 0, d.stdout
    assert tree_snapshot(sdir) == tree_snapshot(golden)
    # hardlinks come back as hardlinks
    a = os.lstat(sdir / "artifacts" / "blob.dat")
    b = os.lstat(sdir / "artifacts" / "blob-hardlink.dat")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    assert os.readlink(sdir / "artifacts" / "latest-weights") == "models/weights.bin"
    assert os.stat(sdir / "state.json").st_mtime_ns == 1_700_000_000_123_456_789
    assert stat.S_IMODE(os.stat(sdir / "artifacts" / "models" / "weights.bin").st_mode) == 0o640

    # the safety backup holds the state just before the recover
    safety = backups_by_note(fl1)[f"pre-recover {full['id']}"]
    assert safety["type"] == "full" and safety["id"] != full["id"]
    assert safety["id"] in r.out and full["id"] in r.out
    assert "safety backup" in r.out
    m = fl1.manifest("S1", safety["id"])
    paths = {e["path"] for e in m["entries"]}
    assert "artifacts/new.bin" in paths and "newdir/deep/f" in paths
    assert "logs/tool-output.txt" not in paths and "state/plan.json" not in paths

    # and recovering the safety backup undoes the recover
    r = fl1.run("recover", "S1", safety["id"], "--no-safety-backup", "--json")
    assert r.rc == 0, r
    j = r.json()
    assert j["safety_backup_id"] is None and j["id"] == safety["id"]
    assert tree_snapshot(sdir) == mutated
    assert fl1.run("verify", "S1").rc == 0


def test_json_report_and_restore_alias(fl1):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    (sdir / "extra.txt").write_text("extra")
    (sdir / "logs" / "run.log").write_text("shorter")
    r = fl1.run("restore", "latest", "--json", env={"FLOWLOOM_NOW": str(NOW + 5)})
    assert r.rc == 0, r
    j = r.json()
    assert j["session_id"] == "S1" and j["id"] == full["id"] and j["type"] == "full"
    assert j["into_session"] is True and j["dry_run"] is False
    assert j["destination"] == str(sdir)
    assert j["safety_backup_id"] == backups_by_note(fl1)[f"pre-recover {full['id']}"]["id"]
    assert j["files"] == full["files"] and j["bytes"] == full["bytes"]
    changes = {c["path"]: c["kind"] for c in j["changes"]}
    assert changes["extra.txt"] == "removed" and changes["logs/run.log"] == "modified"
    assert j["summary"]["removed"] >= 1 and j["summary"]["modified"] >= 1
    assert not (sdir / "extra.txt").exists()


def test_dry_run_lists_the_changes_and_changes_nothing(fl1):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    (sdir / "added-since.txt").write_text("new")
    (sdir / "logs" / "tool-output.txt").unlink()
    (sdir / "state.json").write_text('{"step": 1000}\n')
    os.chmod(sdir / "metadata.json", 0o600)
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)

    r = fl1.run("recover", full["id"], "--dry-run")
    assert r.rc == 0, r
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before
    assert "removed: added-since.txt" in r.out
    assert "added: logs/tool-output.txt" in r.out
    assert "modified: state.json" in r.out
    assert "changed: metadata.json" in r.out
    assert "Nothing was changed" in r.out
    j = fl1.run("recover", full["id"], "--dry-run", "--json").json()
    assert j["dry_run"] is True and j["safety_backup_id"] is None
    changes = {c["path"]: c["kind"] for c in j["changes"]}
    expected = {"added-since.txt": "removed", "logs/tool-output.txt": "added",
                "state.json": "modified", "metadata.json": "changed"}
    assert {p: changes.get(p) for p in expected} == expected
    # anything else listed is a directory whose mtime moved with its contents
    for p, kind in changes.items():
        if p not in expected:
            assert kind == "changed" and (sdir / p).is_dir(), (p, kind)
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before


def test_recover_only_touches_only_the_backups_own_files(fl1):
    """--only: the behaviour recover had before it restored the session as
    it stood (tests/cli/test_recover_as_of.py)."""
    sdir = fl1.sessions / "S1"
    fl1.backup("full", now=NOW)
    (sdir / "state.json").write_text('{"step": 18}\n')
    (sdir / "state" / "plan.json").write_text('{"todo": ["b"], "done": ["a"]}')
    incr = fl1.backup("incremental", now=NOW + 60)
    incr_paths = {e["path"] for e in fl1.manifest("S1", incr["id"])["entries"]}
    assert incr_paths >= {"state.json", "metadata.json", "state/plan.json"}
    assert "logs/run.log" not in incr_paths

    # the session moves on, inside and outside the incremental's files
    (sdir / "state.json").write_text('{"step": 25, "status": "broken"}\n')
    (sdir / "state" / "plan.json").write_text("not json any more")
    (sdir / "logs" / "run.log").write_text("rewritten log\n")
    (sdir / "artifacts" / "new.bin").write_bytes(b"\x01" * 4096)
    outside = {p: v for p, v in tree_snapshot(sdir).items()
               if not (p.decode() in incr_paths or p.startswith(b"state"))}

    r = fl1.run("recover", "S1", incr["id"], "--only", env={"FLOWLOOM_NOW": str(NOW + 120)})
    assert r.rc == 0, r
    assert f"from:           {incr['id']} alone (--only" in r.out
    assert (sdir / "state.json").read_text() == '{"step": 18}\n'
    assert (sdir / "state" / "plan.json").read_text() == '{"todo": ["b"], "done": ["a"]}'
    after = tree_snapshot(sdir)
    assert {p: v for p, v in after.items() if p in outside} == outside
    assert (sdir / "logs" / "run.log").read_text() == "rewritten log\n"
    assert (sdir / "artifacts" / "new.bin").exists()
    safety = backups_by_note(fl1)[f"pre-recover {incr['id']}"]
    assert safety["type"] == "full"


@pytest.mark.parametrize("how", ["absent", "empty"])
def test_target_directory_gets_the_backup_and_nothing_else_changes(fl1, tmp_path, how):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    golden = golden_copy(sdir, tmp_path / "golden")
    mutate(sdir)
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    target = tmp_path / "out" / "restored"
    target.parent.mkdir()
    if how == "empty":
        target.mkdir()
    r = fl1.run("recover", "S1", full["id"], "--target", target)
    assert r.rc == 0, r
    assert str(target) in r.out and "safety backup" not in r.out
    assert tree_snapshot(target) == tree_snapshot(golden)
    assert diff_r(golden, target).returncode == 0
    # the session and the store are untouched: no safety backup either
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before
    assert sorted(os.listdir(target.parent)) == ["restored"]


def test_non_empty_or_symlink_target_is_refused(fl1, tmp_path):
    full = fl1.backup("full", now=NOW)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    link = tmp_path / "link"
    os.symlink(tmp_path / "elsewhere", link)
    (tmp_path / "elsewhere").mkdir()
    store_before = tree_snapshot(fl1.store)
    listing = sorted(os.listdir(tmp_path))
    for t in (target, link):
        r = fl1.run("recover", full["id"], "--target", t)
        assert r.rc == 2, r
        assert str(t) in r.err
    assert sorted(os.listdir(target)) == ["keep.txt"]
    assert os.listdir(tmp_path / "elsewhere") == []
    assert sorted(os.listdir(tmp_path)) == listing  # no staging dir left behind
    assert tree_snapshot(fl1.store) == store_before


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


@pytest.mark.parametrize("damage", ["archive-middle", "archive-truncated", "manifest"])
def test_corrupt_backup_is_refused_before_touching_the_session(fl1, damage):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    mutate(sdir)
    archive = fl1.archive("S1", full["id"])
    if damage == "archive-middle":
        flip_byte(archive, archive.stat().st_size // 2)
    elif damage == "archive-truncated":
        os.truncate(archive, archive.stat().st_size // 2)
    else:
        mpath = fl1.store / "S1" / full["id"] / "manifest.json"
        m = json.loads(mpath.read_bytes())
        for e in m["entries"]:
            if e["path"] == "logs/run.log":
                e["sha256"] = "0" * 64
        mpath.write_text(json.dumps(m))
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    sessions_listing = sorted(os.listdir(fl1.sessions))

    r = fl1.run("recover", "S1", full["id"], env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 1, r
    assert r.err.startswith("flowloom-backup: ") and full["id"] in r.err, r
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before  # not even a safety backup
    assert sorted(os.listdir(fl1.sessions)) == sessions_listing  # no staging leftovers


def test_missing_backup_and_bad_arguments(fl1):
    fl1.backup("full", now=NOW)
    before = tree_snapshot(fl1.sessions / "S1")
    r = fl1.run("recover", "S1", "20200101T000000Z-full-abcdef")
    assert r.rc == 3 and "20200101T000000Z-full-abcdef" in r.err, r
    r = fl1.run("recover", "nosuch", "latest")
    assert r.rc == 3 and "nosuch" in r.err, r
    # in the id alphabet but the start of no id: unknown, exit 3, nothing touched
    r = fl1.run("recover", "S1", "not-a-backup")
    assert r.rc == 3 and "backup 'not-a-backup' not found in session S1" in r.err, r
    for args in (["S1", "not/a backup"], ["S1", "latest", "extra"], ["--target", ""],
                 ["--wait", "x"], ["--bogus"]):
        r = fl1.run("recover", *args)
        assert r.rc == 2, (args, r)
    assert tree_snapshot(fl1.sessions / "S1") == before
    # a session without any backup
    fl1.session("S2", realistic=False)
    r = fl1.run("recover", "S2")
    assert r.rc == 3 and "S2" in r.err, r


def hold_lock(path, ready, release):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    release.wait(30)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def test_recover_while_the_lock_is_held_is_busy(fl1):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    mutate(sdir)
    before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=hold_lock, args=(fl1.store / "S1" / ".lock", ready, release))
    t.start()
    try:
        assert ready.wait(10)
        r = fl1.run("recover", full["id"], "--wait", "0")
        assert r.rc == 4, r
        assert "S1" in r.err
        assert tree_snapshot(sdir) == before
        assert tree_snapshot(fl1.store) == store_before
    finally:
        release.set()
        t.join()


def craft_backup(fl, sid, bid, members):
    """Replaces backup bid's archive with a hand-made one (pax tar, one zstd
    frame, a seek table) and rewrites its manifest and index record to match
    byte for byte, so only the restore's own rules can refuse it.
    members: [(tar_name, manifest_path, kind, data_or_target)]."""
    import hashlib
    import io
    import struct
    import tarfile
    buf = io.BytesIO()
    entries = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for tar_name, path, kind, payload in members:
            ti = tarfile.TarInfo(tar_name)
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = NOW, 0, 0, "", ""
            e = {"path": path, "uid": 0, "gid": 0, "mtime": NOW, "mtime_nsec": 0}
            if kind == "file":
                ti.type, ti.mode, ti.size = tarfile.REGTYPE, 0o644, len(payload)
                tf.addfile(ti, io.BytesIO(payload))
                # the data ends the stream so far, padded to 512-byte blocks
                data_start = tf.offset - (len(payload) + 511) // 512 * 512
                e.update(type="file", mode=0o644, size=len(payload),
                         sha256=hashlib.sha256(payload).hexdigest(), offset=data_start)
            else:
                ti.type, ti.mode, ti.linkname = tarfile.SYMTYPE, 0o777, payload
                tf.addfile(ti)
                e.update(type="symlink", mode=0o777, size=0, target=payload)
            entries.append(e)
    tar = buf.getvalue()
    # --stream-size: the frame header declares its content size, as the
    # writer's frames do (readers refuse frames that do not).
    frame = subprocess.run(["zstd", "-q", "-c", "--no-progress", f"--stream-size={len(tar)}"],
                           input=tar, capture_output=True, check=True).stdout
    table = struct.pack("<II", len(frame), len(tar))
    footer = struct.pack("<IBI", 1, 0, 0x8F92EAB1)
    archive = frame + struct.pack("<II", 0x184D2A5E, len(table) + len(footer)) + table + footer
    fl.archive(sid, bid).write_bytes(archive)

    mpath = fl.store / sid / bid / "manifest.json"
    m = json.loads(mpath.read_bytes())
    m["entries"] = entries
    m["archive"].update(size=len(archive), sha256=hashlib.sha256(archive).hexdigest(),
                        frames=1, frame_size=1 << 20)
    files = [e for e in entries if e["type"] == "file"]
    m["totals"] = {"files": len(files), "dirs": 0,
                   "symlinks": len(entries) - len(files),
                   "bytes": sum(e["size"] for e in files)}
    mpath.write_text(json.dumps(m))
    ipath = fl.store / sid / "index.json"
    idx = json.loads(ipath.read_bytes())
    for rec in idx["backups"]:
        if rec["id"] == bid:
            rec.update(files=m["totals"]["files"], bytes=m["totals"]["bytes"],
                       stored_bytes=len(archive), archive_sha256=m["archive"]["sha256"])
    ipath.write_text(json.dumps(idx))


@pytest.mark.parametrize("attack", ["dotdot", "dotdot-in-manifest", "absolute",
                                    "symlink-then-write"])
@pytest.mark.parametrize("where", ["session", "target"])
def test_crafted_archive_is_refused_and_nothing_is_written_outside(fl1, tmp_path, attack, where):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    outside = tmp_path / "outside"
    outside.mkdir()
    members = {
        "dotdot": [("ok.txt", "ok.txt", "file", b"fine"),
                   ("../evil", "evil", "file", b"pwned")],
        "dotdot-in-manifest": [("../evil", "../evil", "file", b"pwned")],
        "absolute": [(str(outside / "abs"), "abs", "file", b"pwned")],
        "symlink-then-write": [("link", "link", "symlink", str(outside)),
                               ("link/pwned", "link/pwned", "file", b"pwned")],
    }[attack]
    craft_backup(fl1, "S1", full["id"], members)
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    parent_listing = sorted(os.listdir(fl1.sessions))
    tmp_listing = sorted(os.listdir(tmp_path))

    args = ["recover", "S1", full["id"]]
    if where == "target":
        args += ["--target", tmp_path / "restored"]
    r = fl1.run(*args, env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 1, r
    assert full["id"] in r.err
    assert os.listdir(outside) == []
    assert not (fl1.flowloom / "evil").exists() and not (fl1.sessions / "evil").exists()
    assert not (tmp_path / "evil").exists()
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before  # no safety backup either
    assert sorted(os.listdir(fl1.sessions)) == parent_listing
    assert sorted(os.listdir(tmp_path)) == tmp_listing


def test_crafted_benign_archive_restores(fl1, tmp_path):
    """The control for the attacks above: the same crafting with safe names
    restores, so the refusals are the restore's rules, not a bad fixture."""
    full = fl1.backup("full", now=NOW)
    craft_backup(fl1, "S1", full["id"], [("ok.txt", "ok.txt", "file", b"fine"),
                                          ("link", "link", "symlink", "ok.txt")])
    assert fl1.run("verify", "S1", full["id"]).rc == 0
    r = fl1.run("recover", "S1", full["id"], "--target", tmp_path / "restored")
    assert r.rc == 0, r
    assert (tmp_path / "restored" / "ok.txt").read_bytes() == b"fine"
    assert os.readlink(tmp_path / "restored" / "link") == "ok.txt"


def test_sparse_files_come_back_sparse(fl1, tmp_path):
    # A 64 MiB image holding 5 bytes is stored dense (zstd makes little of
    # the zeros) but must not come back as 64 MiB of disk (issue 9, point 10).
    sdir = fl1.sessions / "S1"
    img = sdir / "disk.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
        f.seek(10_000_000)
        f.write(b"hello")
    assert os.stat(img).st_blocks * 512 < (1 << 20)
    fl1.backup("full", now=NOW)
    target = tmp_path / "out"
    r = fl1.run("recover", "--target", str(target))
    assert r.rc == 0, r
    out = target / "disk.img"
    assert os.stat(out).st_size == 64 << 20
    assert os.stat(out).st_blocks * 512 < (1 << 20), os.stat(out)
    assert sha256_file(out) == sha256_file(img)
    img.unlink()
    r = fl1.run("recover", "--no-safety-backup")
    assert r.rc == 0, r
    assert os.stat(img).st_blocks * 512 < (1 << 20) and sha256_file(img) == sha256_file(out)
