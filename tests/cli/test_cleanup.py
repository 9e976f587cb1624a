"""`cleanup`: the SPEC retention rules on fabricated ages ($FLOWLOOM_NOW),
the report (every backup with its rule, the policy), --dry-run changing
nothing, leftovers, the lock, --all, JSON, and backup + cleanup racing."""
import fcntl
import json
import os
import subprocess
import threading
import time

import pytest

from fbhelpers import tree_snapshot

DAY = 86400
BASE = 1764558900  # 2025-12-01T03:15:00Z


def small_session(fl, sid="S1"):
    sdir = fl.session(sid, realistic=False)
    (sdir / "metadata.json").write_text('{"title": "retention"}\n')
    (sdir / "state").mkdir(exist_ok=True)
    (sdir / "state" / "plan.json").write_text('{"todo": []}\n')
    (sdir / "log.txt").write_text("x" * 100)
    return sdir


def make_backups(fl, sid, schedule):
    """schedule: [(type, created_at)] in order. Returns [(id, type, created_at)]."""
    out = []
    for typ, when in schedule:
        j = fl.backup(typ, "--no-verify", "--no-cleanup", sid=sid, now=when)
        assert j["type"] == typ
        out.append((j["id"], typ, when))
    return out


def expected_split(backups, now, keep_full=10, max_age_days=30, min_keep=1):
    """The SPEC rules, written independently of the C code. backups are in
    seq order. Returns (kept ids, removed ids)."""
    n = len(backups)
    newest = n - 1
    fulls = [i for i, b in enumerate(backups) if b[1] == "full"]
    newest_full = fulls[-1] if fulls else None
    kept_fulls = set(fulls[-keep_full:]) if keep_full else set()
    remove = set()
    for i, (bid, typ, created) in enumerate(backups):
        if i in (newest, newest_full):
            continue
        excess = typ == "full" and i not in kept_fulls
        too_old = max_age_days > 0 and now - created > max_age_days * DAY
        if excess or too_old:
            remove.add(i)
    # min_keep: give back the newest removable ones
    for i in sorted(remove, reverse=True):
        if n - len(remove) >= min_keep:
            break
        remove.discard(i)
    kept = [backups[i][0] for i in range(n) if i not in remove]
    removed = [backups[i][0] for i in range(n) if i in remove]
    return kept, removed


def decision_lines(out):
    """backup id -> decision text ("kept: ...", "removed: ...")."""
    lines = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and len(parts[0]) == 28 and parts[0][8] == "T":
            for marker in ("kept: ", "removed: "):
                at = line.find(marker)
                if at >= 0:
                    lines[parts[0]] = line[at:]
    return lines


def on_disk(fl, sid="S1"):
    return sorted(p.name for p in (fl.store / sid).iterdir()
                  if p.is_dir() and not p.name.startswith("."))


def indexed(fl, sid="S1"):
    return [b["id"] for b in fl.index(sid)["backups"]]


@pytest.fixture
def thirty_two(fl):
    """12 full + 20 incremental backups of S1, two days apart (62 days)."""
    small_session(fl)
    full_at = {0, 2, 5, 8, 10, 13, 16, 19, 22, 25, 28, 30}
    schedule = [("full" if k in full_at else "incremental", BASE + k * 2 * DAY)
                for k in range(32)]
    backups = make_backups(fl, "S1", schedule)
    assert sum(1 for b in backups if b[1] == "full") == 12
    return fl, backups


def test_twelve_full_twenty_incremental_leave_exactly_the_spec_survivors(thirty_two):
    fl, backups = thirty_two
    now = backups[-1][2] + DAY
    kept, removed = expected_split(backups, now)
    # the schedule exercises both removal rules and leaves both kinds of survivor
    assert backups[0][0] in removed and backups[2][0] in removed  # excess full + old
    assert 5 < len(removed) < 27 and kept[-1] == backups[-1][0]

    r = fl.run("cleanup", "S1", env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    assert "keep_full 10" in r.out and "max_age_days 30" in r.out and "min_keep 1" in r.out
    assert on_disk(fl) == sorted(kept)
    assert indexed(fl) == kept  # seq order, newest last
    assert f"Removed {len(removed)} backups, kept {len(kept)}." in r.out

    # every backup is named with the rule that decided it
    lines = decision_lines(r.out)
    assert set(lines) == {b[0] for b in backups}
    for bid in removed:
        assert lines[bid].startswith("removed: "), (bid, lines[bid])
        assert lines[bid] in ("removed: older than 30 days",
                              "removed: not among the 10 newest full backups"), lines[bid]
    for bid in kept:
        assert lines[bid].startswith("kept: "), (bid, lines[bid])
    assert lines[backups[-1][0]] == "kept: newest backup"
    assert lines[backups[30][0]] == "kept: newest full"
    # an incremental can only go for its age
    for bid in removed:
        if "-incr-" in bid:
            assert lines[bid] == "removed: older than 30 days"

    # the index and the directories agree, and a second run removes nothing
    r = fl.run("cleanup", "S1", "--json", env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    j = r.json()
    assert j["removed"] == [] and [k["id"] for k in j["kept"]] == kept


def test_keep_full_rule_without_age_and_flags_override_config(thirty_two):
    fl, backups = thirty_two
    now = backups[-1][2] + DAY
    # config says keep 10 fulls and 30 days; the flags override both
    (fl.flowloom / "backup.json").write_text(json.dumps(
        {"retention": {"keep_full": 10, "max_age_days": 30, "min_keep": 1}}))
    kept, removed = expected_split(backups, now, keep_full=3, max_age_days=0)
    r = fl.run("cleanup", "--session", "S1", "--keep-full", "3", "--max-age", "0", "--json",
               env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    j = r.json()
    assert j["session_id"] == "S1" and j["dry_run"] is False
    assert j["policy"] == {"keep_full": 3, "max_age_days": 0, "min_keep": 1}
    assert [k["id"] for k in j["kept"]] == kept
    assert [k["id"] for k in j["removed"]] == removed
    # with no age rule only full backups go, all for rule (a)
    assert all(b[1] == "full" for b in backups if b[0] in removed)
    assert len(removed) == 12 - 3
    assert {k["rule"] for k in j["removed"]} == {"not among the 3 newest full backups"}
    assert on_disk(fl) == sorted(kept) and indexed(fl) == kept


def test_config_policy_and_min_keep(fl):
    small_session(fl)
    backups = make_backups(fl, "S1", [("full", BASE), ("incremental", BASE + DAY),
                                      ("incremental", BASE + 2 * DAY),
                                      ("incremental", BASE + 3 * DAY),
                                      ("full", BASE + 4 * DAY),
                                      ("incremental", BASE + 5 * DAY)])
    (fl.flowloom / "backup.json").write_text(json.dumps(
        {"retention": {"keep_full": 10, "max_age_days": 1, "min_keep": 4}}))
    now = BASE + 100 * DAY
    kept, removed = expected_split(backups, now, max_age_days=1, min_keep=4)
    assert len(kept) == 4
    r = fl.run("cleanup", "--json", "S1", env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    j = r.json()
    assert j["policy"] == {"keep_full": 10, "max_age_days": 1, "min_keep": 4}
    assert [k["id"] for k in j["kept"]] == kept
    rules = {k["id"]: k["rule"] for k in j["kept"]}
    assert rules[backups[5][0]] == "newest backup"
    assert rules[backups[4][0]] == "newest full"
    assert rules[backups[3][0]] == "min_keep 4" and rules[backups[2][0]] == "min_keep 4"
    assert {k["rule"] for k in j["removed"]} == {"older than 1 day"}
    assert on_disk(fl) == sorted(kept)


def test_all_older_than_30_days_keeps_the_newest_and_the_newest_full(fl):
    small_session(fl)
    backups = make_backups(fl, "S1", [("full", BASE), ("incremental", BASE + 60),
                                      ("full", BASE + 120), ("incremental", BASE + 180),
                                      ("incremental", BASE + 240)])
    now = BASE + 90 * DAY
    r = fl.run("cleanup", "S1", env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    survivors = [backups[2][0], backups[4][0]]
    assert on_disk(fl) == sorted(survivors) and indexed(fl) == survivors
    lines = decision_lines(r.out)
    assert lines[backups[4][0]] == "kept: newest backup"
    assert lines[backups[2][0]] == "kept: newest full"
    for i in (0, 1, 3):
        assert lines[backups[i][0]] == "removed: older than 30 days"


def test_dry_run_changes_nothing(thirty_two):
    fl, backups = thirty_two
    now = backups[-1][2] + DAY
    kept, removed = expected_split(backups, now)
    # leftovers of interrupted runs are reported, not cleared, by a dry run
    (fl.store / "S1" / ".tmp-0123abcd").mkdir()
    (fl.store / "S1" / ".tmp-0123abcd" / "archive.tar.zst").write_bytes(b"partial")
    (fl.store / "S1" / ".trash-x").mkdir()
    before = tree_snapshot(fl.store)
    index_before = (fl.store / "S1" / "index.json").read_bytes()

    r = fl.run("cleanup", "S1", "--dry-run", env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    assert tree_snapshot(fl.store) == before
    assert (fl.store / "S1" / "index.json").read_bytes() == index_before
    assert "nothing was changed" in r.out
    assert f"would remove {len(removed)} backups" in r.out
    lines = decision_lines(r.out)
    assert {b for b, t in lines.items() if t.startswith("removed")} == set(removed)
    assert ".tmp-0123abcd" in r.out and ".trash-x" in r.out

    j = fl.run("cleanup", "S1", "-n", "--json", env={"FLOWLOOM_NOW": str(now)}).json()
    assert j["dry_run"] is True
    assert [k["id"] for k in j["removed"]] == removed
    assert sorted(j["leftovers"]) == [".tmp-0123abcd", ".trash-x"]
    assert tree_snapshot(fl.store) == before

    # a dry run with a missing index rebuilds it in memory only
    (fl.store / "S1" / "index.json").unlink()
    before = tree_snapshot(fl.store)
    r = fl.run("cleanup", "S1", "--dry-run", env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    assert "index rebuilt" in r.err
    assert tree_snapshot(fl.store) == before

    # the real run clears the leftovers and removes exactly the planned ones
    r = fl.run("cleanup", "S1", env={"FLOWLOOM_NOW": str(now)})
    assert r.rc == 0, r
    assert sorted(p.name for p in (fl.store / "S1").iterdir() if p.name.startswith(".t")) == []
    assert on_disk(fl) == sorted(kept) and indexed(fl) == kept


def test_missing_or_broken_index_is_rebuilt_and_written_before_removal(fl):
    small_session(fl)
    backups = make_backups(fl, "S1", [("full", BASE), ("full", BASE + DAY),
                                      ("incremental", BASE + 2 * DAY)])
    for damage in ("missing", "unparseable"):
        idx = fl.store / "S1" / "index.json"
        if damage == "missing":
            idx.unlink()
        else:
            idx.write_text("{")
        r = fl.run("cleanup", "S1", "--keep-full", "1", "--max-age", "0")
        assert r.rc == 0, r
        assert "index rebuilt" in r.err, r
        assert "Index: rebuilt from the manifests and written" in r.out
        # the index on disk lists exactly what is on disk
        assert sorted(indexed(fl)) == on_disk(fl)
    assert on_disk(fl) == sorted([backups[1][0], backups[2][0]])
    # the rebuilt index parses strictly: verify is happy with it
    assert fl.run("verify", "S1").rc == 0


def test_all_sessions_and_empty_session(fl):
    small_session(fl, "A")
    small_session(fl, "B")
    small_session(fl, "C")  # no backups
    a = make_backups(fl, "A", [("full", BASE), ("full", BASE + DAY)])
    b = make_backups(fl, "B", [("full", BASE), ("incremental", BASE + DAY),
                               ("full", BASE + 2 * DAY)])
    r = fl.run("cleanup", "--all", "--keep-full", "1", "--json",
               env={"FLOWLOOM_NOW": str(BASE + 3 * DAY)})
    assert r.rc == 0, r
    j = r.json()
    assert isinstance(j, list) and [s["session_id"] for s in j] == ["A", "B"]
    assert [k["id"] for k in j[0]["removed"]] == [a[0][0]]
    assert [k["id"] for k in j[1]["removed"]] == [b[0][0]]
    assert on_disk(fl, "A") == [a[1][0]]
    assert on_disk(fl, "B") == sorted([b[1][0], b[2][0]])

    r = fl.run("cleanup", "C")
    assert r.rc == 0, r
    assert "No backups of session C" in r.out
    j = fl.run("cleanup", "C", "--json").json()
    assert j["kept"] == [] and j["removed"] == []
    assert not (fl.store / "C").exists()

    r = fl.run("cleanup", "--all")
    assert r.rc == 0 and "Session A" in r.out and "Session B" in r.out, r


@pytest.mark.parametrize("args", [
    ["--keep-full", "x"], ["--max-age", "-1"], ["--max-age", "40000"], ["--all", "S1"],
    ["S1", "S2"], ["--wait", "later"], ["--bogus"],
])
def test_cleanup_usage_errors(fl, args):
    small_session(fl)
    make_backups(fl, "S1", [("full", BASE)])
    before = tree_snapshot(fl.store)
    r = fl.run("cleanup", *args)
    assert r.rc == 2, r
    assert r.err.startswith("flowloom-backup: ")
    assert tree_snapshot(fl.store) == before


def test_cleanup_of_a_missing_session_is_not_found(fl):
    small_session(fl)
    r = fl.run("cleanup", "nosuch")
    assert r.rc == 3 and "nosuch" in r.err, r


def hold_lock(path, ready, release):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    ready.set()
    release.wait(30)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def test_cleanup_while_the_lock_is_held_is_busy_and_removes_nothing(fl):
    small_session(fl)
    make_backups(fl, "S1", [("full", BASE), ("full", BASE + DAY)])
    before = tree_snapshot(fl.store)
    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=hold_lock, args=(fl.store / "S1" / ".lock", ready, release))
    t.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        r = fl.run("cleanup", "S1", "--keep-full", "1", "--wait", "0")
        assert time.monotonic() - started < 5
        assert r.rc == 4, r
        assert "S1" in r.err
        assert tree_snapshot(fl.store) == before
        # a dry run takes no lock
        r = fl.run("cleanup", "S1", "--keep-full", "1", "--dry-run")
        assert r.rc == 0 and "would remove 1 backup," in r.out, r
    finally:
        release.set()
        t.join()
    r = fl.run("cleanup", "S1", "--keep-full", "1", "--wait", "5")
    assert r.rc == 0, r
    assert len(on_disk(fl)) == 1


@pytest.mark.parametrize("wait", ["10", "0"])
def test_backup_and_cleanup_started_together(fl, wait):
    small_session(fl)
    make_backups(fl, "S1", [("full", BASE + i) for i in range(4)])
    env = fl.env()
    for rnd in range(4):
        procs = [
            subprocess.Popen([str(fl.bin), "backup", "S1", "full", f"round {rnd}", "--wait", wait,
                              "--no-cleanup", "-q"], cwd=fl.root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            subprocess.Popen([str(fl.bin), "cleanup", "S1", "--keep-full", "2", "--wait", wait,
                              "-q"], cwd=fl.root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        ]
        results = [(p.wait(60), p.communicate()) for p in procs]
        codes = [rc for rc, _ in results]
        assert all(rc in (0, 4) for rc in codes), results
        assert codes.count(4) <= 1, results
        for rc, (_, err) in results:
            if rc == 4:
                assert b"S1" in err
        # the index lists exactly the backups on disk, in seq order
        idx = fl.index("S1")
        assert sorted(b["id"] for b in idx["backups"]) == on_disk(fl)
        seqs = [b["seq"] for b in idx["backups"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert not [p for p in (fl.store / "S1").iterdir()
                    if p.name.startswith((".tmp-", ".trash-"))]
    assert fl.run("verify", "S1").rc == 0


def test_a_backup_with_an_unreadable_manifest_is_never_removed(fl):
    small_session(fl)
    backups = make_backups(fl, "S1", [("full", BASE), ("full", BASE + DAY),
                                      ("full", BASE + 2 * DAY)])
    damaged = backups[0][0]
    (fl.store / "S1" / damaged / "manifest.json").write_text("{")
    (fl.store / "S1" / "index.json").unlink()
    r = fl.run("cleanup", "S1", "--keep-full", "1", "--max-age", "0")
    assert r.rc == 0, r
    assert "index rebuilt" in r.err and damaged in r.err, r
    # the rebuilt index knows only the readable backups; the damaged one is
    # not planned, not removed, and left for verify to report
    assert damaged not in r.out
    assert indexed(fl) == [backups[2][0]]
    assert on_disk(fl) == sorted([damaged, backups[2][0]])
    v = fl.run("verify", "S1")
    assert v.rc == 1 and damaged in v.out


def test_help_for_cleanup_recover_restore_diff(fl):
    for cmd, word in (("cleanup", "--dry-run"), ("recover", "--target"),
                      ("restore", "--no-safety-backup"), ("diff", "--live")):
        r = fl.run(cmd, "--help")
        assert r.rc == 0 and r.out.startswith("Usage: flowloom-backup ") and word in r.out, r
    r = fl.run("--help")
    for cmd in ("cleanup", "recover, restore", "diff"):
        assert f"  {cmd} " in r.out, r.out


# One rule for a retention value, on the command line and in backup.json
# (issue 9, point 10: `--keep-full 0` was accepted by cleanup and refused in
# the config). The reason is given where a 0 is refused.
REFUSED_BOTH_WAYS = [
    ("--keep-full", "keep_full", 0,
     "expected an integer 1..100000, got 0 (the newest full backup is always kept)"),
    ("--min-keep", "min_keep", 0,
     "expected an integer 1..100000, got 0 (the newest backup is always kept)"),
    ("--keep-full", "keep_full", 100001, "expected an integer 1..100000, got 100001"),
    ("--min-keep", "min_keep", 100001, "expected an integer 1..100000, got 100001"),
    ("--max-age", "max_age_days", 36501, "expected an integer 0..36500, got 36501"),
    ("--keep-full", "keep_full", 5000000000, "expected an integer 1..100000, got 5000000000"),
]


@pytest.mark.parametrize("option,key,value,message", REFUSED_BOTH_WAYS)
def test_a_retention_value_refused_as_option_is_refused_in_the_config(fl, option, key, value,
                                                                      message):
    small_session(fl)
    make_backups(fl, "S1", [("full", BASE), ("full", BASE + DAY)])
    before = tree_snapshot(fl.store)

    r = fl.run("cleanup", "S1", option, str(value))
    assert r.rc == 2, r
    assert r.err.splitlines()[0] == f"flowloom-backup: cleanup: {option}: {message}", r

    (fl.flowloom / "backup.json").write_text(json.dumps({"retention": {key: value}}))
    for args in (["cleanup", "S1"], ["backup", "S1", "full"]):
        r = fl.run(*args)
        assert r.rc == 2, (args, r)
        config = fl.flowloom.resolve() / "backup.json"
        assert r.err.splitlines()[0] == (
            f"flowloom-backup: {config}: retention.{key}: {message}"), (args, r)
    assert tree_snapshot(fl.store) == before


@pytest.mark.parametrize("value,got", [("x", "'x'"), ("-1", "'-1'"), ("1.5", "'1.5'"),
                                       ("", "''"), ("99999999999", "99999999999")])
def test_a_retention_option_that_is_no_integer_names_the_option(fl, value, got):
    small_session(fl)
    make_backups(fl, "S1", [("full", BASE)])
    r = fl.run("cleanup", "S1", "--keep-full", value)
    assert r.rc == 2, r
    assert r.err.splitlines()[0] == (
        f"flowloom-backup: cleanup: --keep-full: expected an integer 1..100000, got {got}"), r


@pytest.mark.parametrize("policy", [
    {"keep_full": 1, "max_age_days": 0, "min_keep": 1},
    {"keep_full": 100000, "max_age_days": 36500, "min_keep": 100000},
])
def test_the_bounds_are_accepted_both_ways(fl, policy):
    small_session(fl)
    make_backups(fl, "S1", [("full", BASE), ("full", BASE + DAY)])
    now = {"FLOWLOOM_NOW": str(BASE + 2 * DAY)}
    by_option = fl.run("cleanup", "S1", "--dry-run", "--json",
                       "--keep-full", str(policy["keep_full"]),
                       "--max-age", str(policy["max_age_days"]),
                       "--min-keep", str(policy["min_keep"]), env=now)
    assert by_option.rc == 0, by_option
    (fl.flowloom / "backup.json").write_text(json.dumps({"retention": policy}))
    by_config = fl.run("cleanup", "S1", "--dry-run", "--json", env=now)
    assert by_config.rc == 0, by_config
    assert by_option.json()["policy"] == by_config.json()["policy"] == policy
    assert by_option.json()["removed"] == by_config.json()["removed"]
