"""`forget` (alias `delete`): removing chosen backups by id, by a prefix of the
id or of its 6-hex suffix, several at once; every name resolved before
anything goes (ambiguous: exit 2, unknown: exit 3, nothing removed); the rule
for a full backup with incrementals based on it; --dry-run and --json; the
lock (exit 4); the index written so that `list` shows the removal and does
not rebuild it back; and SIGKILL at each removal step (the reliability
suite's kill points): afterwards the index and the directories agree, and
the next run finishes the job."""
import fcntl
import os
import sys
import threading

import pytest

from fbhelpers import REPO, tree_snapshot

NOW = 1764558900  # 2025-12-01T03:15:00Z
HOUR = 3600
TYPES = ["full", "incremental", "incremental", "full", "incremental"]


@pytest.fixture
def five(fl1):
    """S1 with F0 I1 I2 F3 I4 an hour apart: I1, I2 based on F0, I4 on F3."""
    ids = []
    for k, typ in enumerate(TYPES):
        (fl1.sessions / "S1" / "state.json").write_text(f'{{"step": {k}}}\n')
        j = fl1.backup(typ, "--no-cleanup", "--no-verify", now=NOW + k * HOUR)
        ids.append(j["id"])
    assert [b["base"] for b in fl1.index()["backups"]] == [None, ids[0], ids[0], None, ids[3]]
    return fl1, ids


def indexed(fl, sid="S1"):
    return [b["id"] for b in fl.index(sid)["backups"]]


def listed(fl, sid="S1"):
    r = fl.run("list", "--session", sid, "--json")
    assert r.rc == 0, r
    assert "rebuilt" not in r.err, r
    return [b["id"] for b in r.json()]


def store_state(fl):
    """The whole root but the lock file, whose "pid host" line every
    command that takes the lock rewrites."""
    snap = tree_snapshot(fl.root)
    snap.pop(b".flowloom/backups/S1/.lock", None)
    return snap


def removed_lines(out):
    """backup id -> the text from "removed: " on."""
    lines = {}
    for line in out.splitlines():
        parts = line.split()
        at = line.find("removed: ")
        if parts and at >= 0:
            lines[parts[0]] = line[at:]
    return lines


def assert_gone(fl, gone, kept):
    """The index, the directories and `list` all agree, and `list` needed
    no rebuild (the index was written, not left for a reader to repair)."""
    before = (fl.store / "S1" / "index.json").read_bytes()
    assert indexed(fl) == kept
    assert fl.backup_ids() == sorted(kept)
    assert listed(fl) == kept
    assert (fl.store / "S1" / "index.json").read_bytes() == before
    for bid in gone:
        assert not (fl.store / "S1" / bid).exists()
    assert not [n for n in os.listdir(fl.store / "S1") if n.startswith((".tmp-", ".trash-"))]


def test_one_backup_by_full_id(five):
    fl, ids = five
    r = fl.run("forget", ids[4])
    assert r.rc == 0, r
    assert r.err == ""
    assert removed_lines(r.out) == {ids[4]: "removed: named"}
    assert f"  {ids[4]}  incremental  2025-12-01 07:15:00  removed: named\n" in r.out
    assert r.out.endswith("Removed 1 backup of session S1, 4 remain.\n")
    assert_gone(fl, [ids[4]], ids[:4])
    r = fl.run("list")
    assert r.rc == 0 and ids[4] not in r.out and "rebuilt" not in r.err, r


def test_by_prefix_of_the_suffix_and_of_the_id(five):
    fl, ids = five
    # the shortest start of the random suffix that names one backup
    suffix = next(ids[2][-6:][:k] for k in range(3, 7)
                  if sum(1 for i in ids if i[-6:].startswith(ids[2][-6:][:k]) or
                         i.startswith(ids[2][-6:][:k])) == 1)
    r = fl.run("forget", suffix)
    assert r.rc == 0, r
    assert removed_lines(r.out) == {ids[2]: f"removed: named as '{suffix}'"}
    prefix = ids[1][:15]  # "20251201T041500": the time alone
    r = fl.run("forget", "--session", "S1", prefix)
    assert r.rc == 0, r
    assert removed_lines(r.out) == {ids[1]: f"removed: named as '{prefix}'"}
    assert_gone(fl, ids[1:3], [ids[0], ids[3], ids[4]])


def test_several_at_once_with_the_delete_alias_and_a_session(five):
    fl, ids = five
    r = fl.run("delete", "S1", ids[2], "latest", ids[1][-6:], "latest")
    assert r.rc == 0, r
    assert removed_lines(r.out) == {ids[1]: f"removed: named as '{ids[1][-6:]}'",
                                    ids[2]: "removed: named",
                                    ids[4]: "removed: named as 'latest'"}
    assert "Removed 3 backups of session S1, 2 remain." in r.out
    assert_gone(fl, [ids[1], ids[2], ids[4]], [ids[0], ids[3]])


def test_dry_run_changes_nothing(five):
    fl, ids = five
    before = tree_snapshot(fl.root)
    r = fl.run("forget", "-n", ids[3], "--with-incrementals")
    assert r.rc == 0, r
    assert removed_lines(r.out) == {ids[3]: "removed: named",
                                    ids[4]: f"removed: incremental of {ids[3]}"}
    assert r.out.endswith("Dry run: would remove 2 backups of session S1, 3 would remain; "
                          "nothing was changed.\n")
    r = fl.run("forget", "--dry-run", "--json", ids[0], ids[1], ids[2])
    assert r.rc == 0, r
    j = r.json()
    assert j["dry_run"] is True and [x["id"] for x in j["removed"]] == ids[:3]
    assert j["remaining"] == 2
    assert tree_snapshot(fl.root) == before


def test_json(five):
    fl, ids = five
    r = fl.run("forget", "--json", ids[0][-6:], "--with-incrementals")
    assert r.rc == 0, r
    j = r.json()
    assert j == {
        "session_id": "S1", "dry_run": False, "index_rebuilt": False, "remaining": 2,
        "removed": [
            {"id": ids[0], "type": "full", "created_at": "2025-12-01T03:15:00Z",
             "stored_bytes": j["removed"][0]["stored_bytes"], "rule": "named",
             "name": ids[0][-6:], "base": None},
            {"id": ids[1], "type": "incremental", "created_at": "2025-12-01T04:15:00Z",
             "stored_bytes": j["removed"][1]["stored_bytes"], "rule": f"incremental of {ids[0]}",
             "name": None, "base": ids[0]},
            {"id": ids[2], "type": "incremental", "created_at": "2025-12-01T05:15:00Z",
             "stored_bytes": j["removed"][2]["stored_bytes"], "rule": f"incremental of {ids[0]}",
             "name": None, "base": ids[0]},
        ]}
    assert all(x["stored_bytes"] > 0 for x in j["removed"])
    assert_gone(fl, ids[:3], ids[3:])


@pytest.mark.parametrize("names,rc,words", [
    (["2025"], 2, ["ambiguous", "type more of the id"]),
    (["LAST", "latest"], 3, ["'LAST' not found in session S1"]),
    (["latest", "19991231T"], 3, ["'19991231T' not found"]),
    (["latest", "2025", "nosuch"], 2, ["ambiguous", "and 1 more of the 3 names"]),
    (["latest", "../x"], 2, ["invalid backup id"]),
])
def test_bad_names_change_nothing(five, names, rc, words):
    fl, ids = five
    before = store_state(fl)
    r = fl.run("forget", "--session", "S1", *names)
    assert r.rc == rc, r
    assert r.out == ""
    for w in words + ["nothing was removed"]:
        assert w in r.err, (w, r)
    assert store_state(fl) == before


def test_unknown_session_and_missing_names(five):
    fl, ids = five
    r = fl.run("forget", "nosuch", ids[0])
    assert r.rc == 3 and "nosuch" in r.err and "not found" in r.err, r
    r = fl.run("forget", "S1")
    assert r.rc == 2 and "no backup named" in r.err, r
    r = fl.run("forget")
    assert r.rc == 2 and "no backup named" in r.err, r
    assert indexed(fl) == ids


def test_a_base_with_remaining_incrementals_is_refused(five):
    fl, ids = five
    before = store_state(fl)
    r = fl.run("forget", ids[0])
    assert r.rc == 2, r
    assert r.err.startswith(f"flowloom-backup: full backup {ids[0]} of session S1 is the base "
                            f"of incremental backups {ids[1]}, {ids[2]}, which would remain"), r
    assert "--with-incrementals" in r.err and "nothing was removed" in r.err
    assert ids[4] not in r.err
    # naming only some of them is not enough either
    r = fl.run("forget", ids[0], ids[2])
    assert r.rc == 2 and f"incremental backup {ids[1]}," in r.err, r
    r = fl.run("forget", "latest-full")
    assert r.rc == 2 and ids[3] in r.err and ids[4] in r.err, r
    assert store_state(fl) == before

    # named too: allowed; then with the option
    r = fl.run("forget", ids[0], ids[1], ids[2])
    assert r.rc == 0, r
    assert set(removed_lines(r.out).values()) == {"removed: named"}
    r = fl.run("forget", "latest-full", "--with-incrementals")
    assert r.rc == 0, r
    assert removed_lines(r.out) == {ids[3]: "removed: named as 'latest-full'",
                                    ids[4]: f"removed: incremental of {ids[3]}"}
    assert r.out.endswith("Removed 2 backups of session S1, 0 remain.\n")
    assert_gone(fl, ids, [])


def hold_lock(path, ready, release):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    release.wait(30)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def test_busy_when_the_lock_is_held(five):
    fl, ids = five
    before = tree_snapshot(fl.store)
    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=hold_lock, args=(fl.store / "S1" / ".lock", ready, release))
    t.start()
    try:
        assert ready.wait(10)
        r = fl.run("forget", ids[4], "--wait", "0")
        assert r.rc == 4, r
        assert "S1" in r.err and "lock" in r.err, r
        assert tree_snapshot(fl.store) == before
        # a dry run is a reader: no lock needed
        r = fl.run("forget", ids[4], "--dry-run")
        assert r.rc == 0, r
    finally:
        release.set()
        t.join()
    r = fl.run("forget", ids[4], "--wait", "0")
    assert r.rc == 0, r
    assert_gone(fl, [ids[4]], ids[:4])


def test_a_rebuilt_index_is_written_before_the_removal(five):
    fl, ids = five
    (fl.store / "S1" / "index.json").unlink()
    r = fl.run("forget", ids[2])
    assert r.rc == 0, r
    assert "index rebuilt" in r.err
    assert r.out.startswith("Index: rebuilt from the manifests and written\n")
    assert_gone(fl, [ids[2]], [ids[0], ids[1], ids[3], ids[4]])


# ---- SIGKILL at every removal step (tests/reliability's kill points) ----

sys.path.insert(0, str(REPO / "tests" / "reliability"))
import relhelpers  # noqa: E402

SYSCALLS = ["renameat", "renameat2", "unlinkat", "fsync"]


@pytest.mark.parametrize("syscall", SYSCALLS)
def test_sigkill_at_each_removal_step(fl, tmp_path, syscall):
    """forget of an incremental under `strace -e inject=<syscall>:signal=SIGKILL:when=N`
    for N = 1, 2, ... until it completes (renameat: the index commit;
    renameat2: the rename aside; unlinkat: the deletion; fsync: each commit's
    durability). After each kill the store invariants hold, the index lists
    either every backup or all but the named one, and each listed backup is
    whole; the next forget finishes the job (or, when the index commit had
    happened and the directory was already aside, says it is not found and
    clears the leftover), after which index and directories agree."""
    skip = relhelpers.strace_skip_reason()
    if skip:
        pytest.skip(skip)
    relhelpers.write_config(fl)
    sdir = relhelpers.small_session(fl)
    ids = []
    for k, typ in enumerate(["full", "incremental", "incremental"]):
        (sdir / "state.json").write_text(f'{{"step": {k}}}\n')
        ids.append(fl.backup(typ, "--no-cleanup", sid="S")["id"])
    target, kept = ids[1], [ids[0], ids[2]]
    args = ("forget", "--session", "S", target, "-q")
    log = tmp_path / "strace.log"
    points = []
    for n in range(1, 60):
        work = relhelpers.clone(fl, tmp_path / "work")
        r = work.run(*args, prefix=relhelpers.strace_prefix(
            log, syscall, f"{syscall}:signal=SIGKILL:when={n}"))
        if r.rc == 0:
            break
        assert r.rc in relhelpers.KILLED, f"{syscall} #{n}: {r}"
        desc = f"killed at {syscall} #{n}: {relhelpers.kill_point(log)}"
        points.append(desc)
        raw = [b["id"] for b in work.index("S")["backups"]]
        assert raw in (ids, kept), (desc, raw)
        relhelpers.assert_invariants(work, context=desc)
        r = work.run(*args)
        assert r.rc in (0, 3), f"{desc}: the next forget\n{r}"
        if r.rc == 3:
            assert raw == kept and "not found" in r.err, (desc, r)
        assert relhelpers.listed(work) == kept, desc
        assert relhelpers.leftovers(work) == [], desc
        assert not (work.store / "S" / target).exists(), desc
        relhelpers.assert_invariants(work, context=desc)
    else:
        pytest.fail(f"{syscall}: still being killed at when=59")
    assert points, f"no {syscall} was ever killed: this loop tested nothing"
    relhelpers.assert_invariants(work)
    assert relhelpers.listed(work) == kept
    print("\n".join([f"{len(points)} kill points:"] + points))
