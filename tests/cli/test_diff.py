"""`diff`: two backups or a backup and the live session; added / removed /
modified / changed lines, the quick check vs --checksum, incremental scope,
JSON, names escaped for the terminal, exit 0 either way."""
import os

import pytest

from fbhelpers import tree_snapshot

NOW = 1764558900


def lines_of(out, kind):
    return sorted(l for l in out.splitlines() if l.startswith(kind + ": "))


@pytest.fixture
def two_fulls(fl1):
    sdir = fl1.sessions / "S1"
    a = fl1.backup("full", now=NOW)
    (sdir / "logs" / "run.log").write_text("rewritten\n")              # modified
    os.chmod(sdir / "artifacts" / "blob.dat", 0o600)                    # changed (mode)
    (sdir / "logs" / "tool-output.txt").unlink()                        # removed
    (sdir / "notes.txt").write_text("new file\n")                        # added
    os.utime(sdir / "metadata.json", ns=(1_500_000_000_000_000_000,) * 2)  # changed (mtime)
    os.unlink(sdir / "artifacts" / "latest-weights")
    os.symlink("blob.dat", sdir / "artifacts" / "latest-weights")        # modified (target)
    b = fl1.backup("full", now=NOW + 60)
    return fl1, a["id"], b["id"]


def test_two_backups_human_output_grouped(two_fulls):
    fl, a, b = two_fulls
    r = fl.run("diff", a, b)
    assert r.rc == 0, r
    assert lines_of(r.out, "added") == ["added: notes.txt"]
    assert lines_of(r.out, "removed") == ["removed: logs/tool-output.txt"]
    assert lines_of(r.out, "modified") == ["modified: artifacts/latest-weights (target,mtime)",
                                           "modified: logs/run.log (content,mtime)"]
    changed = lines_of(r.out, "changed")
    assert "changed: artifacts/blob.dat (mode)" in changed
    assert "changed: metadata.json (mtime)" in changed
    # the hardlink shares blob.dat's inode, so its mode moved too
    assert "changed: artifacts/blob-hardlink.dat (mode)" in changed
    # the other changed lines are directories whose mtime moved
    for line in changed:
        if line not in ("changed: artifacts/blob.dat (mode)", "changed: metadata.json (mtime)",
                        "changed: artifacts/blob-hardlink.dat (mode)"):
            assert line in ("changed: artifacts (mtime)", "changed: logs (mtime)"), line
    # grouped: every added line before every removed line, and so on
    kinds = [l.split(":")[0] for l in r.out.splitlines()
             if l.split(":")[0] in ("added", "removed", "modified", "changed")]
    order = {"added": 0, "removed": 1, "modified": 2, "changed": 3}
    assert kinds == sorted(kinds, key=order.get)
    assert a in r.out and b in r.out
    # with the session given as a positional, and reversed
    r2 = fl.run("diff", "S1", b, a)
    assert r2.rc == 0
    assert lines_of(r2.out, "added") == ["added: logs/tool-output.txt"]
    assert lines_of(r2.out, "removed") == ["removed: notes.txt"]


def test_two_backups_json(two_fulls):
    fl, a, b = two_fulls
    r = fl.run("diff", "--session", "S1", a, "latest", "--json")
    assert r.rc == 0, r
    j = r.json()
    assert j["a"] == a and j["b"] == b
    items = {i["path"]: i for i in j["items"]}
    assert items["notes.txt"]["kind"] == "added" and items["notes.txt"]["a"] is None
    assert items["logs/tool-output.txt"]["kind"] == "removed"
    assert items["logs/run.log"]["kind"] == "modified"
    assert "content" in items["logs/run.log"]["changes"]
    assert items["artifacts/blob.dat"]["changes"] == ["mode"]
    assert items["artifacts/blob.dat"]["a"]["mode"] == 0o644
    assert items["artifacts/blob.dat"]["b"]["mode"] == 0o600
    s = j["summary"]
    assert s["added"] == 1 and s["removed"] == 1 and s["modified"] == 2
    assert s["changed"] == len([i for i in j["items"] if i["kind"] == "changed"])


def test_identical_backups_and_no_differences_exit_0(fl1):
    a = fl1.backup("full", now=NOW)
    b = fl1.backup("full", now=NOW + 1)
    r = fl1.run("diff", a["id"], b["id"])
    assert r.rc == 0 and "No differences." in r.out, r
    for kind in ("added", "removed", "modified", "changed"):
        assert lines_of(r.out, kind) == []
    r = fl1.run("diff", a["id"], "--live")
    assert r.rc == 0 and "No differences." in r.out, r
    assert fl1.run("diff", "latest", "--live", "--json").json()["items"] == []


def test_live_quick_check_and_checksum(fl1):
    sdir = fl1.sessions / "S1"
    a = fl1.backup("full", now=NOW)
    store_before = tree_snapshot(fl1.store)
    log = sdir / "logs" / "tool-output.txt"
    st = os.stat(log)
    data = log.read_bytes()
    # same size, same mtime, different bytes: invisible to the quick check
    log.write_bytes(data.replace(b"hello", b"HELLO", 1))
    os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = fl1.run("diff", a["id"], "--live")
    assert r.rc == 0 and "No differences." in r.out, r
    r = fl1.run("diff", a["id"], "--live", "--checksum")
    assert r.rc == 0, r
    assert lines_of(r.out, "modified") == ["modified: logs/tool-output.txt (content)"]
    # an edit that changes the size is found without --checksum
    (sdir / "state.json").write_text('{"step": 18}\n')
    r = fl1.run("diff", a["id"], "--live")
    assert "modified: state.json (content,mtime)" in r.out, r
    # a file added, one deleted
    (sdir / "artifacts" / "new.bin").write_bytes(b"x")
    (sdir / "artifacts" / "empty.bin").unlink()
    r = fl1.run("diff", "latest", "--live", "--json")
    items = {i["path"]: i["kind"] for i in r.json()["items"]}
    assert items["artifacts/new.bin"] == "added"
    assert items["artifacts/empty.bin"] == "removed"
    assert items["state.json"] == "modified"
    # diff reads only: the store is as it was
    assert tree_snapshot(fl1.store) == store_before


def test_incremental_is_compared_within_its_scope(fl1):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)
    (sdir / "state.json").write_text('{"step": 19}\n')
    incr = fl1.backup("incremental", now=NOW + 60)
    r = fl1.run("diff", full["id"], incr["id"])
    assert r.rc == 0, r
    # logs and artifacts are not in the incremental, and are not "removed"
    assert lines_of(r.out, "removed") == []
    assert lines_of(r.out, "modified") == ["modified: state.json (content,mtime)"]
    assert "Scope:" in r.out
    j = fl1.run("diff", full["id"], incr["id"], "--json").json()
    assert j["scoped"] is True
    # against the live session, an incremental only looks at its patterns
    (sdir / "logs" / "run.log").write_text("changed log\n")
    r = fl1.run("diff", incr["id"], "--live")
    assert r.rc == 0 and "No differences." in r.out, r


def test_names_are_escaped_for_the_terminal(fl1):
    sdir = fl1.sessions / "S1"
    a = fl1.backup("full", now=NOW)
    with open(os.path.join(os.fsencode(str(sdir)), b"evil\nadded: forged\x1b[31m"), "wb") as f:
        f.write(b"x")
    r = fl1.run("diff", a["id"], "--live")
    assert r.rc == 0, r
    assert lines_of(r.out, "added") == ["added: evil\\nadded: forged\\x1b[31m"]
    assert "\x1b" not in r.out
    j = fl1.run("diff", a["id"], "--live", "--json").json()
    [item] = [i for i in j["items"] if i["kind"] == "added"]
    assert item["path"] == "evil\nadded: forged\x1b[31m"


@pytest.mark.parametrize("args", [
    ["latest"], ["a", "b", "c", "d"], ["latest", "latest", "--checksum"], ["--bogus"],
    ["latest", "no/such"],
])
def test_diff_usage_errors(fl1, args):
    fl1.backup("full", now=NOW)
    r = fl1.run("diff", *args)
    assert r.rc == 2, r
    assert r.err.startswith("flowloom-backup: ")


@pytest.mark.parametrize("args", [["S1", "latest"], ["latest", "nope"]])
def test_diff_unknown_backup_word_is_not_found(fl1, args):
    # Two positionals are two backups; a word that starts no id of the
    # session is an unknown backup (exit 3), as in every command.
    fl1.backup("full", now=NOW)
    r = fl1.run("diff", *args)
    assert r.rc == 3, r
    word = args[0] if args[0] != "latest" else args[1]
    assert (f"flowloom-backup: backup '{word}' not found in session S1: no backup id, nor the "
            "6-hex suffix of one, starts with it") in r.err


def test_diff_missing_backup_or_session_is_not_found(fl1):
    a = fl1.backup("full", now=NOW)
    r = fl1.run("diff", a["id"], "20200101T000000Z-incr-abcdef")
    assert r.rc == 3 and "20200101T000000Z-incr-abcdef" in r.err, r
    r = fl1.run("diff", "nosuch", "latest", "--live")
    assert r.rc == 3 and "nosuch" in r.err, r
