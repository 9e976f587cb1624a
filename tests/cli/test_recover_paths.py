"""`recover --path PATTERN`: only the entries the patterns match (with their
parent directories) are restored, into the session (after the safety backup)
or into --target; what they match in the session that the backup does not
hold goes, nothing outside them is written or removed; a pattern matching
nothing is exit 3 before anything is touched; --dry-run; a hardlink whose
file is not matched comes back as a copy of that file."""
import os

from fbhelpers import tree_snapshot

NOW = 1764558900


def backups_by_note(fl, sid="S1"):
    return {b["note"]: b for b in fl.index(sid)["backups"]}


def setup_backup(fl):
    """A full backup of S1 with two JSON artifacts, then a session that has
    moved on inside and outside them."""
    sdir = fl.sessions / "S1"
    (sdir / "artifacts" / "a.json").write_text('{"a": 1}\n')
    (sdir / "artifacts" / "b.json").write_text('{"b": 1}\n')
    full = fl.backup("full", now=NOW)
    golden = tree_snapshot(sdir)
    (sdir / "logs" / "run.log").write_text("rewritten\n")
    (sdir / "logs" / "tool-output.txt").unlink()
    (sdir / "logs" / "later.log").write_text("not in the backup\n")
    (sdir / "artifacts" / "a.json").write_text('{"a": 2}\n')
    (sdir / "artifacts" / "c.json").write_text('{"c": "new"}\n')
    (sdir / "artifacts" / "models" / "more.json").write_text("{}\n")
    (sdir / "state.json").write_text('{"step": 99}\n')
    (sdir / "extra.txt").write_text("extra, outside every pattern\n")
    return sdir, full, golden


def outside(snap, prefixes):
    """The entries of a snapshot outside the given path prefixes (bytes)."""
    return {p: v for p, v in snap.items()
            if not any(p == pre.rstrip(b"/") or p.startswith(pre) for pre in prefixes)}


def test_directory_pattern_into_the_session(fl1):
    sdir, full, golden = setup_backup(fl1)
    before = tree_snapshot(sdir)
    r = fl1.run("recover", full["id"], "--path", "logs/", env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0, r
    assert "paths:          logs/ (3 entries" in r.out
    after = tree_snapshot(sdir)
    # logs/ is as it was in the backup, down to the metadata: what it did not
    # hold is gone
    assert outside(after, [b"artifacts", b"metadata.json", b"state", b"extra.txt"]) == \
        outside(golden, [b"artifacts", b"metadata.json", b"state", b"extra.txt"])
    assert not (sdir / "logs" / "later.log").exists()
    assert (sdir / "logs" / "tool-output.txt").read_text() == "hello\n" * 1000
    # everything else is exactly as it was, the files the backup lacks too
    assert outside(after, [b"logs"]) == outside(before, [b"logs"])
    assert (sdir / "extra.txt").exists() and (sdir / "artifacts" / "c.json").exists()
    # a safety backup came first, as for every recover into the session
    safety = backups_by_note(fl1)[f"pre-recover {full['id']}"]
    paths = {e["path"] for e in fl1.manifest("S1", safety["id"])["entries"]}
    assert "logs/later.log" in paths


def test_glob_pattern_into_the_session(fl1):
    sdir, full, golden = setup_backup(fl1)
    before = tree_snapshot(sdir)
    r = fl1.run("recover", full["id"], "--path", "artifacts/*.json", "--json",
                env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0, r
    j = r.json()
    assert j["paths"] == ["artifacts/*.json"] and j["selected"] == 3  # artifacts, a, b
    changes = {c["path"]: c["kind"] for c in j["changes"]}
    assert changes["artifacts/a.json"] == "modified"
    assert changes["artifacts/c.json"] == "removed"
    assert "artifacts/models/more.json" not in changes  # '*' does not cross '/'
    assert (sdir / "artifacts" / "a.json").read_text() == '{"a": 1}\n'
    assert not (sdir / "artifacts" / "c.json").exists()
    after = tree_snapshot(sdir)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert changed == {b"artifacts", b"artifacts/a.json", b"artifacts/c.json"}
    assert (sdir / "state.json").read_text() == '{"step": 99}\n'
    assert (sdir / "artifacts" / "models" / "more.json").exists()
    assert j["safety_backup_id"]


def test_repeated_patterns_into_a_target(fl1, tmp_path):
    sdir, full, golden = setup_backup(fl1)
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    target = tmp_path / "out"
    r = fl1.run("recover", full["id"], "--path", "artifacts/*.json", "-p", "state/",
                "--target", target)
    assert r.rc == 0, r
    got = tree_snapshot(target)
    assert set(got) == {b"artifacts", b"artifacts/a.json", b"artifacts/b.json", b"state",
                        b"state/notes.md", b"state/plan.json"}
    for p in got:
        assert got[p] == golden[p], p
    # no safety backup, the session untouched
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before


def test_pattern_matching_nothing_is_exit_3_and_touches_nothing(fl1, tmp_path):
    sdir, full, _ = setup_backup(fl1)
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    sessions_before = sorted(os.listdir(fl1.sessions))
    for missing, args in (("nothing/here*", ["--path", "logs/", "--path", "nothing/here*"]),
                          ("artifacts/c.json", ["--path", "artifacts/c.json"]),  # only live
                          ("nothing", ["--path", "nothing", "--dry-run"]),
                          ("nothing", ["--path", "nothing", "--target", tmp_path / "t"])):
        r = fl1.run("recover", full["id"], *args, env={"FLOWLOOM_NOW": str(NOW + 60)})
        assert r.rc == 3, (args, r)
        assert f"--path '{missing}' matches nothing" in r.err, r
        assert r.out == ""
        assert tree_snapshot(sdir) == session_before
        assert tree_snapshot(fl1.store) == store_before  # no safety backup
        assert sorted(os.listdir(fl1.sessions)) == sessions_before  # nothing staged
    assert not (tmp_path / "t").exists()
    r = fl1.run("recover", full["id"], "--path", "nothing/here*")
    assert "'nothing/here*'" in r.err and full["id"] in r.err
    r = fl1.run("recover", full["id"], "--path", "")
    assert r.rc == 2, r


def test_dry_run_lists_what_would_be_restored(fl1):
    sdir, full, _ = setup_backup(fl1)
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl1.store)
    r = fl1.run("recover", full["id"], "--path", "logs/", "--path", "artifacts/*.json",
                "--dry-run")
    assert r.rc == 0, r
    assert "modified: logs/run.log" in r.out
    assert "added: logs/tool-output.txt" in r.out
    assert "removed: logs/later.log" in r.out
    assert "modified: artifacts/a.json" in r.out
    assert "removed: artifacts/c.json" in r.out
    assert "state.json" not in r.out and "extra.txt" not in r.out
    assert "more.json" not in r.out
    assert "Nothing was changed" in r.out
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl1.store) == store_before


def test_only_with_path_takes_the_backups_own_entries_and_removes_nothing(fl1):
    sdir = fl1.sessions / "S1"
    fl1.backup("full", now=NOW)
    (sdir / "state" / "plan.json").write_text('{"todo": [], "done": ["a", "b"]}')
    incr = fl1.backup("incremental", now=NOW + 60)
    (sdir / "state" / "plan.json").write_text("broken")
    (sdir / "state" / "new.json").write_text("{}")
    (sdir / "state.json").write_text('{"step": 1000}\n')
    # logs/ is not among the incremental's own entries
    r = fl1.run("recover", incr["id"], "--only", "--path", "logs/")
    assert r.rc == 3 and "--only" in r.err, r
    r = fl1.run("recover", incr["id"], "--only", "--path", "state/",
                env={"FLOWLOOM_NOW": str(NOW + 120)})
    assert r.rc == 0, r
    assert (sdir / "state" / "plan.json").read_text() == '{"todo": [], "done": ["a", "b"]}'
    assert (sdir / "state" / "new.json").exists()  # --only removes nothing
    assert (sdir / "state.json").read_text() == '{"step": 1000}\n'


def test_incremental_as_of_tree_with_path(fl1, tmp_path):
    """Without --only a pattern is matched against the session as it stood
    at the backup: an incremental's base full provides logs/."""
    sdir = fl1.sessions / "S1"
    fl1.backup("full", now=NOW)
    (sdir / "state.json").write_text('{"step": 2}\n')
    incr = fl1.backup("incremental", now=NOW + 60)
    r = fl1.run("recover", incr["id"], "--path", "logs/run.log", "--path", "state.json",
                "--target", tmp_path / "t", "--json")
    assert r.rc == 0, r
    j = r.json()
    assert len(j["sources"]) == 2 and j["sources"][1] == incr["id"]
    assert (tmp_path / "t" / "state.json").read_text() == '{"step": 2}\n'
    assert (tmp_path / "t" / "logs" / "run.log").read_bytes() == \
        (sdir / "logs" / "run.log").read_bytes()
    assert sorted(os.listdir(tmp_path / "t")) == ["logs", "state.json"]


def test_hardlink_whose_file_is_not_matched_comes_back_as_a_copy(fl1, tmp_path):
    """The manifest's hardlink entry names its file; restored alone, the
    hardlink gets the file's content as a file of its own, and the file it
    was linked to is neither restored nor touched."""
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    entries = {e["path"]: e for e in fl1.manifest("S1", full["id"])["entries"]}
    link = next(p for p, e in entries.items() if e["type"] == "hardlink")
    file = entries[link]["link"]
    content = (sdir / file).read_bytes()
    os.unlink(sdir / link)
    (sdir / file).write_bytes(b"the file moved on")
    r = fl1.run("recover", full["id"], "--path", link, env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0, r
    assert (sdir / link).read_bytes() == content
    assert (sdir / file).read_bytes() == b"the file moved on"
    assert os.lstat(sdir / link).st_ino != os.lstat(sdir / file).st_ino
    # into a target: the hardlink alone, a regular file with the content
    r = fl1.run("recover", full["id"], "--path", link, "--target", tmp_path / "t")
    assert r.rc == 0, r
    st = os.lstat(tmp_path / "t" / link)
    assert st.st_nlink == 1 and (tmp_path / "t" / link).read_bytes() == content
    assert not (tmp_path / "t" / file).exists()
    # both matched: a hardlink again
    r = fl1.run("recover", full["id"], "--path", "artifacts/blob*", "--target", tmp_path / "u")
    assert r.rc == 0, r
    assert os.lstat(tmp_path / "u" / link).st_ino == os.lstat(tmp_path / "u" / file).st_ino
