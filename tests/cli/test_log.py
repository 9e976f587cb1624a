"""`log`: the history of one path across a session's backups, oldest first:
one line per backup where the path changed (type, size, SHA-256, symlink
target), --all with every backup holding it (unchanged ones marked), --json,
and the refusals: a path in no backup (exit 3), a bad path (exit 2)."""
import datetime
import os
import pathlib

import pytest

from fbhelpers import sha256_bytes

NOW = 1764558900


def local(t):
    """The creation time as list prints it (the tests run with TZ=UTC)."""
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def history(fl):
    """Five backups of S1: state.json v1 (full), v2 (incremental), v2 again
    (incremental), v2 again (full), v3 (incremental); the symlink
    artifacts/latest-weights retargeted in the second full."""
    sdir = fl.sessions / "S1"
    ids, contents = [], []

    def backup(kind, at, text):
        if text is not None:
            (sdir / "state.json").write_text(text)
        contents.append((sdir / "state.json").read_bytes())
        ids.append(fl.backup(kind, now=at)["id"])

    backup("full", NOW, '{"step": 1}\n')
    backup("incremental", NOW + 60, '{"step": 2}\n')
    backup("incremental", NOW + 120, None)
    os.unlink(sdir / "artifacts" / "latest-weights")
    os.symlink("blob.dat", sdir / "artifacts" / "latest-weights")
    backup("full", NOW + 180, None)
    backup("incremental", NOW + 240, '{"step": 3, "status": "done"}\n')
    return ids, contents


def version_lines(out):
    return [line for line in out.splitlines() if line[:8].isdigit()]


def test_log_lists_the_versions_that_changed(fl1):
    ids, contents = history(fl1)
    r = fl1.run("log", "state.json")
    assert r.rc == 0, r
    assert r.out.startswith("History of state.json in session S1: 3 versions, held by 5 of 5 "
                            "backups\n")
    lines = version_lines(r.out)
    assert [line.split()[0] for line in lines] == [ids[0], ids[1], ids[4]]
    for line, i, kind in zip(lines, (0, 1, 4), ("full", "incremental", "incremental")):
        f = line.split()
        assert f[1] == kind
        assert " ".join(f[2:4]) == local(NOW + 60 * i)
        assert f[4] == "file" and int(f[5]) == len(contents[i])
        assert f[6] == sha256_bytes(contents[i])[:12] and len(f) == 7
    # the same with the session named, positionally or with --session
    assert version_lines(fl1.ok("log", "S1", "state.json").out) == lines
    assert version_lines(fl1.ok("--session", "S1", "log", "./state.json").out) == lines
    # -q: the lines alone
    assert fl1.ok("log", "state.json", "-q").out.splitlines() == lines


def test_log_all_marks_the_unchanged_versions(fl1):
    ids, contents = history(fl1)
    r = fl1.ok("log", "state.json", "--all")
    lines = version_lines(r.out)
    assert [line.split()[0] for line in lines] == ids
    unchanged = [line.split()[0] for line in lines if line.endswith("(unchanged)")]
    assert unchanged == [ids[2], ids[3]]


def test_log_follows_a_symlink_target_and_skips_backups_without_the_path(fl1):
    ids, _ = history(fl1)
    r = fl1.ok("log", "artifacts/latest-weights", "--all")
    lines = version_lines(r.out)
    # only the full backups hold it: incrementals take *.json and state/
    assert [line.split()[0] for line in lines] == [ids[0], ids[3]]
    assert lines[0].split()[4] == "symlink" and lines[0].endswith("-> models/weights.bin")
    assert lines[1].endswith("-> blob.dat") and "(unchanged)" not in lines[1]
    assert "2 versions, held by 2 of 5 backups" in r.out
    # a directory: its type is its content
    lines = version_lines(fl1.ok("log", "logs/").out)
    assert [line.split()[0] for line in lines] == [ids[0]] and lines[0].split()[4] == "dir"


def test_log_json(fl1):
    ids, contents = history(fl1)
    j = fl1.ok("log", "state.json", "--json").json()
    assert j["session_id"] == "S1" and j["path"] == "state.json"
    assert [v["id"] for v in j["versions"]] == [ids[0], ids[1], ids[4]]
    v = j["versions"][1]
    assert v["created_at"] == "2025-12-01T03:16:00Z"
    assert v["type"] == "incremental" and v["entry_type"] == "file"
    assert v["size"] == len(contents[1]) and v["sha256"] == sha256_bytes(contents[1])
    assert v["target"] is None and v["changed"] is True
    j = fl1.ok("log", "state.json", "--all", "--json").json()
    assert [v["changed"] for v in j["versions"]] == [True, True, False, False, True]
    j = fl1.ok("log", "artifacts/latest-weights", "--json").json()
    assert [(v["entry_type"], v["target"], v["sha256"]) for v in j["versions"]] == [
        ("symlink", "models/weights.bin", None), ("symlink", "blob.dat", None)]
    # a hardlink's content is its file's
    j = fl1.ok("log", "artifacts/blob-hardlink.dat", "--json").json()
    blob = (fl1.sessions / "S1" / "artifacts" / "blob.dat").read_bytes()
    assert j["versions"][0]["entry_type"] in ("hardlink", "file")
    assert j["versions"][0]["sha256"] == sha256_bytes(blob)


def test_log_of_a_path_in_no_backup_is_exit_3(fl1):
    history(fl1)
    store_before = sorted(p for p in fl1.store.rglob("*"))
    r = fl1.run("log", "no/such/file.txt")
    assert r.rc == 3, r
    assert "no/such/file.txt" in r.err and "S1" in r.err and r.out == ""
    # a session without backups says so, also exit 3
    fl1.session("S2")
    r = fl1.run("log", "S2", "state.json")
    assert r.rc == 3, r
    assert "S2" in r.err
    assert sorted(p for p in fl1.store.rglob("*")) == store_before


def test_log_refuses_bad_paths_with_exit_2(fl1):
    history(fl1)
    for bad in ("/etc/passwd", "../S2/state.json", "logs/../state.json", ""):
        r = fl1.run("log", bad)
        assert r.rc == 2, (bad, r)
        assert r.out == ""
    assert "absolute" in fl1.run("log", "/etc/passwd").err
    r = fl1.run("log")
    assert r.rc == 2 and "path" in r.err
    r = fl1.run("log", "S1", "a", "b")
    assert r.rc == 2 and "unexpected argument" in r.err


def test_log_is_in_the_help(fl1):
    r = fl1.ok("--help")
    assert any(line.split()[:1] == ["log"] for line in r.out.splitlines())
    r = fl1.ok("log", "--help")
    assert r.out.startswith("Usage: flowloom-backup log [session_id] <path> [--all] [--json]")


def test_log_reads_one_manifest_at_a_time(fl):
    """Eight full backups of 20,000 entries: log's peak memory is about that
    of `show` reading one manifest, not the sum of all eight."""
    if not os.path.exists("/usr/bin/time"):
        pytest.skip("/usr/bin/time is not installed (package time)")
    if b"__asan_init" in pathlib.Path(fl.bin).read_bytes():
        pytest.skip("AddressSanitizer keeps freed memory in quarantine: peak RSS says nothing")
    sdir = fl.session("M", realistic=False)
    for i in range(20000):
        d = sdir / "d" / f"{i % 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_text(str(i))
    for k in range(8):
        (sdir / "state.json").write_text('{"k": %d}\n' % (k // 2))
        fl.backup("full", "--no-cleanup", "--no-verify", sid="M", now=NOW + 60 * k)

    def peak(*args):
        out = fl.root.parent / "time.out"
        r = fl.run("--session", "M", *args, prefix=["/usr/bin/time", "-f", "%M", "-o", str(out)])
        assert r.rc == 0, r
        return r, int(out.read_text().split()[-1])

    r, log_kib = peak("log", "state.json", "--all", "--json")
    assert [v["changed"] for v in r.json()["versions"]] == [True, False] * 4
    _, show_kib = peak("show", "latest", "--files")
    assert log_kib <= show_kib * 1.25 + 8 * 1024, (log_kib, show_kib)
