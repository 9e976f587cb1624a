"""F1/F2/F3/F5: SIGKILL at the entry of every write, fsync, rename, unlink,
openat and mkdirat of a backup (full, incremental) and of a cleanup, one
kill point at a time (strace inject=...:signal=SIGKILL:when=N, N = 1, 2, ...
until the command completes). After each kill the store invariants hold,
`list` shows the previous backups or the previous ones plus the new one, and
the next run succeeds and leaves no .tmp-*/.trash-* behind.

strace counts injections per syscall and per thread, so a set such as
{rename, renameat, renameat2} with when=N kills at the N-th call of *each*
of them: the first renameat (the index commit) comes after the first
renameat2 (the publish) and would never be a kill point. Each syscall of a
set is therefore looped on its own. The compression workers make no such
syscalls, so the counts are those of the main thread and deterministic."""
import json
import os
import subprocess

import pytest

from fbhelpers import sha256_bytes
from relhelpers import (KILLED, assert_invariants, clone, index_bytes, kill_point, leftovers,
                        listed, small_session, strace_prefix, write_config)

SETS = {
    "write": ["write", "pwrite64"],
    "fsync": ["fsync", "fdatasync"],
    "rename": ["rename", "renameat", "renameat2"],
    "unlink": ["unlink", "unlinkat"],
    "openat": ["openat"],
    "mkdir": ["mkdir", "mkdirat"],
}
CAP = 300  # kill points per syscall; the small tree needs well under 100


def kill_loop(base, tmp_path, args, syscalls, after_kill, after_done):
    """Runs args under strace once per kill point; returns [(syscall, n, point)]."""
    points = []
    log = tmp_path / "strace.log"
    for sc in syscalls:
        for n in range(1, CAP + 1):
            work = clone(base, tmp_path / "work")
            r = work.run(*args, prefix=strace_prefix(log, sc, f"{sc}:signal=SIGKILL:when={n}"))
            if r.rc == 0:
                after_done(work, f"{sc} when={n} (completed)")
                break
            assert r.rc in KILLED, f"{sc} when={n}: exit {r.rc}, not the injected SIGKILL\n{r}"
            point = kill_point(log)
            points.append((sc, n, point))
            after_kill(work, f"killed at {sc} #{n}: {point}")
        else:
            pytest.fail(f"{sc}: the command was still being killed at when={CAP}")
    # A set the command never calls would pass without testing anything.
    assert points, f"no call of {syscalls} was ever killed: this loop tested nothing"
    print(f"\n{len(points)} kill points:")
    for sc, n, point in points:
        print(f"  {sc} #{n}: {point}")
    return points


def new_ids(before, after):
    assert after[:len(before)] == before, (before, after)
    return after[len(before):]


@pytest.fixture
def base_two(fl, need_strace):
    """S with a full and an incremental backup."""
    write_config(fl)
    sdir = small_session(fl)
    b0 = fl.backup("full", sid="S")["id"]
    (sdir / "state.json").write_text('{"step": 18}\n')
    b1 = fl.backup("incremental", sid="S")["id"]
    return fl, [b0, b1]


def plant_leftovers(fl, prev):
    """Leftovers of interrupted runs (a backup temp dir, an index temp file, a
    removal in progress) for the next locked run to clear: the unlink/unlinkat
    kill points. Only for the unlink set: each warning about them is written
    to stderr a byte at a time, hundreds of write kill points."""
    sd = fl.store / "S"
    (sd / ".tmp-0123456789abcdef").mkdir(mode=0o700)
    (sd / ".tmp-0123456789abcdef" / "archive.tar.zst").write_bytes(b"\0" * 5000)
    (sd / ".tmp-index.json-0123456789abcdef").write_bytes(b'{"format": 1')
    trash = sd / f".trash-{prev[0][:-6]}abcdef-01234567"
    trash.mkdir(mode=0o700)
    (trash / "manifest.json").write_text("{}")


def check_next_backup(work, before, kind, desc):
    r = work.run("backup", "--session", "S", kind, "-q")
    assert r.rc == 0, f"{desc}: the next backup failed\n{r}"
    assert leftovers(work) == [], f"{desc}: leftovers after the next backup"
    assert len(new_ids(before, listed(work))) == 1, desc


@pytest.mark.slow
@pytest.mark.parametrize("sysset", list(SETS))
def test_f1_sigkill_during_full_backup(base_two, tmp_path, sysset):
    base, prev = base_two
    if sysset == "unlink":
        plant_leftovers(base, prev)
    args = ("backup", "--session", "S", "full", "-q")

    def after_kill(work, desc):
        assert_invariants(work, context=desc)
        ids = listed(work)
        added = new_ids(prev, ids)
        assert len(added) <= 1 and all("-full-" in i for i in added), (desc, ids)
        check_next_backup(work, ids, "full", desc)

    def after_done(work, desc):
        assert_invariants(work, context=desc)
        added = new_ids(prev, listed(work))
        assert len(added) == 1 and "-full-" in added[0], desc
        assert leftovers(work) == [], desc

    kill_loop(base, tmp_path, args, SETS[sysset], after_kill, after_done)


def session_state_files(sdir):
    """What an incremental with the default include takes: top-level *.json
    and everything under state/, as {relative path: bytes}."""
    want = {}
    for name in os.listdir(sdir):
        if name.endswith(".json") and (sdir / name).is_file():
            want[name] = (sdir / name).read_bytes()
    for dirpath, _, filenames in os.walk(sdir / "state"):
        for name in filenames:
            full = os.path.join(dirpath, name)
            want[os.path.relpath(full, sdir)] = open(full, "rb").read()
    return want


def check_incremental_content(work, bid, golden, tmp_path, desc):
    """The incremental, extracted with GNU tar, equals the session's files
    as they were at backup time, and its manifest hashes them."""
    m = json.loads((work.store / "S" / bid / "manifest.json").read_bytes())
    files = {e["path"]: e for e in m["entries"] if e["type"] == "file"}
    assert sorted(files) == sorted(golden), desc
    out = tmp_path / "extract"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(work.store / "S" / bid / "archive.tar.zst"),
                    "-C", str(out)], check=True)
    for path, data in golden.items():
        got = (out / path).read_bytes()
        assert got == data, f"{desc}: {path} differs after extraction"
        assert files[path]["sha256"] == sha256_bytes(data), desc


@pytest.fixture
def base_full_and_changes(fl, need_strace):
    """S with one full backup, then state changed and a state file added."""
    write_config(fl)
    sdir = small_session(fl)
    b0 = fl.backup("full", sid="S")["id"]
    (sdir / "state.json").write_text('{"step": 19, "status": "changed"}\n')
    (sdir / "state" / "added.json").write_text('{"new": true}\n')
    (sdir / "metadata.json").write_text('{"title": "renamed"}\n')
    return fl, [b0], session_state_files(sdir)


@pytest.mark.slow
@pytest.mark.parametrize("sysset", list(SETS))
def test_f2_sigkill_during_incremental_backup(base_full_and_changes, tmp_path, sysset):
    base, prev, golden = base_full_and_changes
    if sysset == "unlink":
        plant_leftovers(base, prev)
    args = ("backup", "--session", "S", "incremental", "-q")

    def after_kill(work, desc):
        assert_invariants(work, context=desc)
        ids = listed(work)
        added = new_ids(prev, ids)
        assert len(added) <= 1 and all("-incr-" in i for i in added), (desc, ids)
        for bid in added:
            check_incremental_content(work, bid, golden, tmp_path, desc)
        check_next_backup(work, ids, "incremental", desc)

    def after_done(work, desc):
        assert_invariants(work, context=desc)
        added = new_ids(prev, listed(work))
        assert len(added) == 1 and "-incr-" in added[0], desc
        check_incremental_content(work, added[0], golden, tmp_path, desc)
        # and restored by the tool itself: exactly the files of that time
        target = tmp_path / "restored"
        subprocess.run(["rm", "-rf", str(target)], check=True)
        r = work.run("recover", "--session", "S", added[0], "--only", "--target", str(target),
                     "-q")
        assert r.rc == 0, r
        got = {os.path.relpath(os.path.join(d, f), target): open(os.path.join(d, f), "rb").read()
               for d, _, fs in os.walk(target) for f in fs}
        assert got == golden, desc

    kill_loop(base, tmp_path, args, SETS[sysset], after_kill, after_done)


def test_f5_sigkill_at_the_index_commit(base_two, tmp_path):
    """Killed exactly at the rename of the index (path-scoped to the session
    store dir: strace -P matches *at syscalls by their dirfd, not by the
    relative name, so -P .../index.json would never fire; renameat is used
    only for index.json, renameat2 for the publish). The old index stays byte
    for byte; the new backup is a complete orphan dir that readers index
    again from its manifest (docs/crash-safety.md)."""
    fl, prev = base_two
    sd = fl.store / "S"
    before = index_bytes(fl)
    log = tmp_path / "strace.log"
    r = fl.run("backup", "--session", "S", "full", "-q",
               prefix=strace_prefix(log, "renameat", "renameat:signal=SIGKILL:when=1",
                                    extra=("-P", str(sd))))
    assert r.rc in KILLED, r
    point = kill_point(log)
    assert point.startswith("renameat(") and '"index.json"' in point, point
    assert index_bytes(fl) == before
    assert subprocess.run(["jq", "-e", ".", str(sd / "index.json")],
                          capture_output=True).returncode == 0
    raw = [b["id"] for b in json.loads(before)["backups"]]
    assert raw == prev
    orphans = sorted(n for n in os.listdir(sd) if n[:1].isdigit() and n not in prev)
    assert len(orphans) <= 1
    # a reader never shows anything half-written: the orphan is complete
    # (it was validated before its rename) and gets indexed from its manifest
    r = fl.run("list", "--session", "S", "-q")
    assert r.rc == 0, r
    assert r.out.split() == prev + orphans
    if orphans:
        assert "index rebuilt" in r.err, r
    assert_invariants(fl)
    r = fl.run("backup", "--session", "S", "full", "-q")
    assert r.rc == 0 and leftovers(fl) == [], r
    assert len(listed(fl)) == len(prev) + len(orphans) + 1
    assert_invariants(fl)


@pytest.fixture
def base_five(fl, need_strace):
    """S with five full backups (the default keep_full of 10 keeps them)."""
    write_config(fl)
    sdir = small_session(fl)
    ids = []
    for i in range(5):
        (sdir / "state.json").write_text(json.dumps({"step": i}) + "\n")
        ids.append(fl.backup("full", sid="S")["id"])
    assert listed(fl) == ids
    return fl, ids


@pytest.mark.slow
# cleanup creates no directory: the mkdir set has no kill point in it.
@pytest.mark.parametrize("sysset", [s for s in SETS if s != "mkdir"])
def test_f3_sigkill_during_cleanup(base_five, tmp_path, sysset):
    """cleanup --keep-full 1 removes four backups: index first, then each
    directory renamed to .trash-* and deleted. After any kill the index lists
    no deleted backup (INV2 on the raw index) and the newest is always there;
    the next cleanup finishes the job and clears the .trash-* leftovers."""
    base, prev = base_five
    args = ("cleanup", "--session", "S", "--keep-full", "1", "-q")

    def after_kill(work, desc):
        assert_invariants(work, context=desc)
        ids = listed(work)
        assert set(ids) <= set(prev) and ids[-1] == prev[-1], (desc, ids)
        assert ids == [i for i in prev if i in ids], desc
        r = work.run(*args)
        assert r.rc == 0, f"{desc}: the next cleanup failed\n{r}"
        assert listed(work) == prev[-1:], desc
        assert leftovers(work) == [], f"{desc}: leftovers after the next cleanup"
        assert sorted(n for n in os.listdir(work.store / "S") if not n.startswith(".")) == \
            sorted(["index.json", prev[-1]]), desc

    def after_done(work, desc):
        assert_invariants(work, context=desc)
        assert listed(work) == prev[-1:], desc
        assert leftovers(work) == [], desc

    kill_loop(base, tmp_path, args, SETS[sysset], after_kill, after_done)
