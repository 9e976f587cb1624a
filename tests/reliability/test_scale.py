"""Scale, resources and time (RELIABILITY F6, F12, F16, F27, F28, F29):
large and odd source trees round-trip byte for byte with a bounded peak RSS;
an address-space limit fails cleanly; a read error fails the backup naming
the file; backups and cleanups killed at random times; a cleanup started
while a slowed backup holds the lock; clocks that jump back and forth."""
import base64
import hashlib
import json
import os
import pathlib
import random
import re
import shutil
import stat
import subprocess
import time

import pytest

from fbhelpers import make_realistic_session, tree_snapshot
from relhelpers import (KILLED, assert_invariants, index_bytes, injected, leftovers, listed,
                        small_session, store_files, write_config)

DAY = 86400
T0 = 1_800_000_000
RSS_LIMIT_KIB = 300 * 1024


def timed(fl, *args, env=None):
    """Runs the CLI under /usr/bin/time; returns (Result, peak RSS KiB, seconds)."""
    if not os.path.exists("/usr/bin/time"):
        pytest.skip("/usr/bin/time is not installed (package time)")
    out = fl.root.parent / "time.out"
    r = fl.run(*args, env=env, timeout=600,
               prefix=["/usr/bin/time", "-f", "%M %e", "-o", str(out)])
    rss, secs = out.read_text().split()[-2:]
    return r, int(rss), float(secs)


def asan_build(fl):
    return b"__asan_init" in pathlib.Path(fl.bin).read_bytes()


# ---- F28: large and odd trees ----

def deep_snapshot(top):
    """Every entry under top by its raw relative path: type, mode, size,
    sha256 or link target, mtime_ns, and the hardlink pairing. Walks with
    directory fds (os.fwalk), so paths longer than PATH_MAX are fine."""
    top = os.fsencode(str(top))
    snap = {}
    inodes = {}  # inode -> paths, for files with more than one link
    for dirpath, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        rel_dir = os.path.relpath(dirpath, top)
        for name in dirnames + filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(name, dir_fd=dirfd)
            if stat.S_ISLNK(st.st_mode):
                snap[rel] = ("l", os.readlink(name, dir_fd=dirfd), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd)
                with os.fdopen(fd, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
                snap[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns,
                             h.hexdigest(), st.st_nlink)
            else:
                snap[rel] = ("other", st.st_mode)
    snap["hardlink groups"] = sorted(sorted(paths) for paths in inodes.values())
    return snap


def mkdirs_at(top, components):
    """Creates top/c1/c2/... one component at a time (the path may be longer
    than PATH_MAX); returns an fd of the last directory."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for c in components:
        os.mkdir(c, dir_fd=fd)
        nfd = os.open(c, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def write_at(dirfd, name, data):
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dirfd)
    os.write(fd, data)
    os.close(fd)


N_DIRS, N_PER_DIR = 200, 100      # 20,000 small files
DEPTH = 150
LONG_COMPONENTS = [b"L" * 250] * 15  # + a 240-byte name: 4005 bytes relative
ODD_NAMES = [b"new\nline.txt", b"caf\xe9-latin1.txt", b"\xff\xfe", b"tab\tand space ",
             b"\xe2\x98\x83 snowman"]


def make_odd_tree(sdir):
    """The F28 tree, scaled for CI; returns (files, longest relative path)."""
    (sdir / "metadata.json").write_text('{"title": "scale"}\n')
    files = 1
    many = sdir / "many"
    many.mkdir()
    for i in range(N_DIRS):
        d = many / f"d{i:03d}"
        d.mkdir()
        for j in range(N_PER_DIR):
            (d / f"f{j:03d}.txt").write_bytes(b"%d/%d\n" % (i, j) * (j % 7))
    files += N_DIRS * N_PER_DIR
    (sdir / "empty").mkdir()
    for i in range(50):
        (sdir / "empty" / f"zero{i:02d}").write_bytes(b"")
    files += 50
    fd = mkdirs_at(sdir, [b"deep"] + [b"d"] * (DEPTH - 1))
    write_at(fd, b"bottom.txt", b"depth %d\n" % DEPTH)
    os.close(fd)
    files += 1
    fd = mkdirs_at(sdir, LONG_COMPONENTS)
    long_name = b"x" * 240
    write_at(fd, long_name, b"long path\n")
    os.close(fd)
    files += 1
    longest = len(b"/".join(LONG_COMPONENTS + [long_name]))
    top = os.fsencode(str(sdir))
    for n in ODD_NAMES:
        with open(os.path.join(top, n), "wb") as f:
            f.write(b"name " + n)
        files += 1
    odd_dir = os.path.join(top, b"dir\xff")
    os.mkdir(odd_dir)
    with open(os.path.join(odd_dir, b"in\nside\xe9"), "wb") as f:
        f.write(b"inside")
    files += 1
    os.symlink(b"target\xff\nnowhere", os.path.join(top, b"link\xe9"))
    os.link(os.path.join(top, ODD_NAMES[0]), os.path.join(top, b"hard\nlink"))
    files += 1
    # older directory mtimes, set after the contents (deepest first), so
    # that a restore that forgot them shows
    for dirpath, dirnames, _, dirfd in os.fwalk(top, topdown=False):
        for k, name in enumerate(dirnames):
            t = 1_700_000_000_000_000_000 + k * 1_000_000_007
            os.utime(name, ns=(t, t), dir_fd=dirfd, follow_symlinks=False)
    return files, longest


@pytest.mark.slow
def test_f28_twenty_thousand_files_depth_long_paths_and_odd_names(fl, tmp_path):
    write_config(fl)
    sdir = fl.sessions / "TREE"
    sdir.mkdir()
    files, longest = make_odd_tree(sdir)
    assert longest >= 4000
    source = deep_snapshot(sdir)

    r, rss, secs = timed(fl, "backup", "--session", "TREE", "full", "--json")
    assert r.rc == 0, r
    bid = r.json()["id"]
    print(f"\nF28 tree: {files} files, longest relative path {longest} bytes, depth {DEPTH}: "
          f"backup {secs:.2f} s, peak RSS {rss / 1024:.1f} MiB")
    m = fl.manifest("TREE", bid)
    assert m["totals"]["files"] == files
    by_raw = {}
    for e in m["entries"]:
        raw = base64.b64decode(e["path_b64"]) if "path_b64" in e else e["path"].encode()
        by_raw[raw] = e
    # names survive JSON: exact bytes via path_b64 when not UTF-8
    for n in ODD_NAMES + [b"dir\xff/in\nside\xe9", b"link\xe9", b"hard\nlink"]:
        assert n in by_raw, n
    assert "path_b64" in by_raw[b"caf\xe9-latin1.txt"]
    assert "path_b64" not in by_raw[b"new\nline.txt"]
    pair = sorted((by_raw[n]["type"], n) for n in (b"hard\nlink", ODD_NAMES[0]))
    assert [t for t, _ in pair] == ["file", "hardlink"], pair
    link = by_raw[pair[1][1]]
    assert (base64.b64decode(link["link_b64"]) if "link_b64" in link
            else link["link"].encode()) == pair[0][1]
    assert max(len(p) for p in by_raw) == longest
    assert by_raw[b"/".join([b"deep"] + [b"d"] * (DEPTH - 1) + [b"bottom.txt"])]["size"] == 10

    v = fl.run("verify", "--session", "TREE")
    assert v.rc == 0 and f"OK {bid}" in v.out, v
    target = tmp_path / "restored"
    r, rss_restore, secs_restore = timed(fl, "recover", "--session", "TREE", bid,
                                         "--target", target, "-q")
    assert r.rc == 0, r
    print(f"F28 tree: recover --target {secs_restore:.2f} s, "
          f"peak RSS {rss_restore / 1024:.1f} MiB")
    restored = deep_snapshot(target)
    assert len(restored) == len(source)
    diff = [k for k in set(restored) | set(source) if restored.get(k) != source.get(k)]
    assert not diff, [(k, source.get(k), restored.get(k)) for k in sorted(diff)[:5]]
    if not asan_build(fl):
        assert rss < RSS_LIMIT_KIB and rss_restore < RSS_LIMIT_KIB, (rss, rss_restore)
    assert_invariants(fl, "TREE")


@pytest.mark.slow
def test_f28_one_gib_sparse_file(fl, tmp_path):
    write_config(fl)
    sdir = fl.sessions / "BIG"
    sdir.mkdir()
    (sdir / "metadata.json").write_text("{}\n")
    size = 1 << 30
    with open(sdir / "sparse.img", "wb") as f:
        f.truncate(size)
        f.seek(size // 2)
        f.write(b"middle")
        f.seek(size - 3)
        f.write(b"end")
    assert os.stat(sdir / "sparse.img").st_blocks * 512 < (1 << 20)  # really sparse
    (sdir / "zero.bin").write_bytes(b"")
    source = deep_snapshot(sdir)

    r, rss, secs = timed(fl, "backup", "--session", "BIG", "full", "--json")
    assert r.rc == 0, r
    bid = r.json()["id"]
    archive = fl.archive("BIG", bid).stat().st_size
    print(f"\nF28 sparse 1 GiB: backup {secs:.2f} s, peak RSS {rss / 1024:.1f} MiB, "
          f"archive {archive} bytes")
    entry = next(e for e in fl.manifest("BIG", bid)["entries"] if e["path"] == "sparse.img")
    assert entry["size"] == size
    assert entry["sha256"] == source[b"sparse.img"][4]
    # holes cost next to nothing: 16,384 frames of 64 KiB of zeros, each a
    # few dozen bytes compressed, plus 12 bytes of seek table each
    assert archive < 4 << 20, archive
    assert secs < 120, f"backing up 1 GiB of holes took {secs} s"
    if not asan_build(fl):
        assert rss < RSS_LIMIT_KIB, rss

    assert fl.run("verify", "--session", "BIG").rc == 0
    target = tmp_path / "restored"
    r, rss_restore, secs_restore = timed(fl, "recover", "--session", "BIG", bid,
                                         "--target", target, "-q")
    assert r.rc == 0, r
    used = os.stat(target / "sparse.img").st_blocks * 512
    print(f"F28 sparse 1 GiB: recover --target {secs_restore:.2f} s, "
          f"peak RSS {rss_restore / 1024:.1f} MiB, restored file uses {used >> 20} MiB on disk")
    assert deep_snapshot(target) == source
    if not asan_build(fl):
        assert rss_restore < RSS_LIMIT_KIB, rss_restore


# ---- F29: address-space limit ----

OOM_WORDS = re.compile(r"memory|Cannot allocate|Resource temporarily unavailable")

@pytest.mark.slow
def test_f29_backup_and_recover_under_an_address_space_limit(fl, tmp_path):
    """prlimit --as from 400 MiB down: each run succeeds, or fails with exit
    5 and a message (or, below what the dynamic loader needs, never starts);
    it never crashes, never leaves a temp behind, and the store stays sound.
    From 128 MiB up it succeeds: under a limit the CLI keeps one malloc
    arena (glibc reserves 64 MiB of address space for each arena a thread
    gets under contention) and starts its threads with 1 MiB stacks instead
    of 8, and this session then needs about 70 MiB. With the arenas, 200 MiB
    failed now and then, and once libarchive, left a few KiB, exited with
    "Fatal Internal Error in libarchive: Out of memory" and status 1."""
    if not shutil.which("prlimit"):
        pytest.skip("prlimit is not installed (util-linux)")
    # the default frame size (1 MiB) and one worker per core: the most memory
    sdir = fl.sessions / "S"
    sdir.mkdir(parents=True)
    make_realistic_session(sdir, fl.rng, log_bytes=3 << 20)
    prev = [fl.backup("full", sid="S")["id"]]
    golden = tree_snapshot(sdir)
    outcomes = []
    for mib in (400, 200, 128, 96, 80, 64, 56, 48, 40):
        limit = ["prlimit", f"--as={mib << 20}"]
        r = fl.run("backup", "--session", "S", "full", "--no-cleanup", "-q", prefix=limit)
        never_started = r.rc == 127 and "error while loading shared libraries" in r.err
        assert r.rc in (0, 5) or never_started, f"{mib} MiB: {r}"
        if mib >= 128:
            assert r.rc == 0, f"{mib} MiB: {r}"
        if r.rc == 5:
            assert r.err.startswith("flowloom-backup: ") and OOM_WORDS.search(r.err), r
        ids = listed(fl)
        assert ids == prev + ids[len(prev):] and len(ids) == len(prev) + (r.rc == 0), r
        assert leftovers(fl) == [], f"{mib} MiB: {leftovers(fl)}"
        assert_invariants(fl, context=f"backup under {mib} MiB: {r.err}")
        prev = ids
        target = tmp_path / f"T{mib}"
        rr = fl.run("recover", "--session", "S", prev[0], "--target", target, "-q",
                    prefix=limit)
        rr_never = rr.rc == 127 and "error while loading shared libraries" in rr.err
        assert rr.rc in (0, 5) or rr_never, f"recover under {mib} MiB: {rr}"
        if mib >= 128:
            assert rr.rc == 0, f"recover under {mib} MiB: {rr}"
        if rr.rc == 0:
            assert tree_snapshot(target) == golden
        else:
            assert rr_never or (rr.err.startswith("flowloom-backup: ") and
                                OOM_WORDS.search(rr.err)), rr
            assert not target.exists()
            assert not [n for n in os.listdir(tmp_path) if n.startswith(".restore-")]
        outcomes.append(f"{mib} MiB: backup {'ok' if r.rc == 0 else r.rc}"
                        f"{'' if r.rc == 0 else ' (' + r.err.strip()[-70:] + ')'}, "
                        f"recover {'ok' if rr.rc == 0 else rr.rc}")
    print("\nF29 outcomes:\n  " + "\n  ".join(outcomes))
    # both sides of the line were reached: the limit really bit
    assert any(": backup ok" in o for o in outcomes), outcomes
    assert any(": backup 5 " in o for o in outcomes), outcomes


# ---- F12: a read error in the source ----

@pytest.mark.parametrize("when", ["1", "3", "2+"])
def test_f12_read_eio_fails_the_backup_naming_the_file(fl, tmp_path, need_strace, when):
    """strace -P <file> -e inject=read:error=EIO (the first read, a read in
    the middle of the 300 KiB file, every read from the second): exit 5
    naming the file and the error, nothing published, the store as before.
    (The unreadable-as-nobody variant is tests/cli test_backup.py.)"""
    write_config(fl)
    sdir = small_session(fl)
    prev = [fl.backup("full", sid="S")["id"]]
    victim = sdir / "artifacts" / "models" / "weights.bin"
    idx_before, files_before = index_bytes(fl), store_files(fl)
    log = tmp_path / "strace.log"
    r = fl.run("backup", "--session", "S", "full",
               prefix=["strace", "-f", "-qq", "-o", str(log), "-P", str(victim),
                       "-e", f"inject=read:error=EIO:when={when}"])
    assert injected(log), log.read_text()
    assert r.rc == 5, r
    assert "artifacts/models/weights.bin" in r.err and "Input/output error" in r.err, r
    assert r.err.startswith("flowloom-backup: ") and "success" not in r.out.lower(), r
    assert index_bytes(fl) == idx_before and store_files(fl) == files_before
    assert listed(fl) == prev and leftovers(fl) == []
    assert_invariants(fl)
    r = fl.run("backup", "--session", "S", "full", "-q")
    assert r.rc == 0, r
    assert len(listed(fl)) == 2


# ---- F6: kills at random times ----

@pytest.mark.slow
def test_f6_random_time_kills_of_backup_and_cleanup(fl):
    """30 runs alternating `backup full` and `cleanup --keep-full 2`, each
    under `timeout -s KILL` at a random time. A backup of this session takes
    about 0.3 s (level 12), so kill times are drawn from 1 ms to 1.2x the
    measured uninterrupted time (1-400 ms on an idle machine; scaled so that
    on a busy one kills still land everywhere and some runs complete); a
    cleanup takes a few ms, so its draw is 1 ms to 1.5x its measured time (a
    1-400 ms draw would almost never hit it). After every run: the store
    invariants, and `list` shows what may be there (an interrupted backup:
    the old list or the old list plus the new backup; an interrupted cleanup:
    a subset, in order, that still has the newest)."""
    (fl.flowloom / "backup.json").write_text(json.dumps(
        {"compression": {"level": 12, "frame_size": 262144}}))
    sdir = fl.sessions / "S"
    sdir.mkdir(parents=True)
    make_realistic_session(sdir, fl.rng, log_bytes=4 << 20)
    fl.backup("full", sid="S")
    t = time.monotonic()
    fl.backup("full", sid="S")
    backup_ms = (time.monotonic() - t) * 1000
    t = time.monotonic()
    assert fl.run("cleanup", "--session", "S", "--keep-full", "2", "-q").rc == 0
    cleanup_ms = (time.monotonic() - t) * 1000
    seed = 6
    rng = random.Random(seed)
    summary = {}  # "<cmd> <outcome>" -> count
    for i in range(30):
        cmd = "backup" if i % 2 == 0 else "cleanup"
        ms = rng.randint(1, int(1.2 * backup_ms) if cmd == "backup" else
                         max(2, int(1.5 * cleanup_ms)))
        args = ("backup", "--session", "S", "full", "-q") if cmd == "backup" else \
            ("cleanup", "--session", "S", "--keep-full", "2", "-q")
        prev = listed(fl)
        r = fl.run(*args, prefix=["timeout", "-s", "KILL", f"{ms / 1000:.3f}s"])
        desc = f"run {i} ({cmd}, kill after {ms} ms, seed {seed}): {r!r}"
        # timeout re-raises the child's SIGKILL on itself
        assert r.rc == 0 or r.rc in KILLED, desc
        left = leftovers(fl)
        assert_invariants(fl, context=desc)
        ids = listed(fl)
        if cmd == "backup":
            assert ids[:len(prev)] == prev and len(ids) - len(prev) <= 1, (desc, prev, ids)
            if r.rc == 0:
                assert len(ids) == len(prev) + 1, desc
                outcome = "completed"
            elif len(ids) > len(prev):
                outcome = "killed after publishing"
            else:
                outcome = "killed, .tmp- left" if left else "killed before any write"
        else:
            assert ids == [x for x in prev if x in ids] and ids[-1] == prev[-1], (desc, ids)
            if r.rc == 0:
                assert ids == prev[-2:] and left == [], desc
                outcome = "completed"
            else:
                outcome = ("killed, some removed" if ids != prev else "killed, none removed") + \
                    (", .trash- left" if any(n.startswith(".trash-") for n in left) else "")
        summary[f"{cmd} {outcome}"] = summary.get(f"{cmd} {outcome}", 0) + 1
    r = fl.run("backup", "--session", "S", "full", "-q")
    assert r.rc == 0 and leftovers(fl) == [], r
    assert_invariants(fl, extract=True)
    print(f"\nF6: uninterrupted backup {backup_ms:.0f} ms, cleanup {cleanup_ms:.0f} ms; "
          "outcomes of 30 runs:\n  " + "\n  ".join(f"{k}: {v}" for k, v in sorted(summary.items())))
    assert any(k.startswith("backup killed") for k in summary), summary


# ---- F16: a cleanup while a slowed backup holds the lock ----

def wait_for_lock_held(fl, proc, timeout=30):
    lock = fl.store / "S" / ".lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if lock.exists() and subprocess.run(["flock", "-n", str(lock), "true"]).returncode:
            return
        time.sleep(0.02)
    pytest.fail("the slowed backup never took the lock")


def test_f16_cleanup_during_a_slowed_backup_is_busy_or_waits(fl, need_strace):
    write_config(fl)
    small_session(fl)
    prev = [fl.backup("full", sid="S")["id"] for _ in range(3)]
    slow = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=write:delay_enter=150000",
         str(fl.bin), "backup", "--session", "S", "full", "--json"],
        cwd=str(fl.root), env=fl.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    waiter = None
    try:
        wait_for_lock_held(fl, slow)
        idx_before = index_bytes(fl)
        t = time.monotonic()
        r = fl.run("cleanup", "--session", "S", "--keep-full", "1", "--wait", "0")
        assert time.monotonic() - t < 3
        assert r.rc == 4, r
        assert "S" in r.err and "busy" in r.err, r
        assert index_bytes(fl) == idx_before and listed(fl) == prev
        assert all((fl.store / "S" / b).is_dir() for b in prev)
        # --wait 30: blocks while the backup runs, then removes all but the
        # newest full, which is by then the slowed backup's
        waiter = subprocess.Popen([str(fl.bin), "cleanup", "--session", "S", "--keep-full", "1",
                                   "--wait", "30", "--json"], cwd=str(fl.root), env=fl.env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        if slow.poll() is None:
            assert waiter.poll() is None, "cleanup did not wait for the lock"
        out, err = slow.communicate(timeout=120)
        assert slow.returncode == 0, err
        new = json.loads(out)["id"]
        wout, werr = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, werr
    finally:
        for p in (slow, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    rep = json.loads(wout)
    assert [k["id"] for k in rep["kept"]] == [new]
    assert sorted(x["id"] for x in rep["removed"]) == sorted(prev)
    assert listed(fl) == [new] and leftovers(fl) == []
    assert_invariants(fl)


# ---- F27: clock anomalies ----

def spec_plan(backups, now, keep_full, max_age_days, min_keep):
    """SPEC retention over [(id, type, created)] in seq order: the set removed."""
    fulls = [b for b in backups if b[1] == "full"]
    keep_always = {backups[-1][0]} | ({fulls[-1][0]} if fulls else set())
    newest_fulls = {b[0] for b in fulls[-keep_full:]} if keep_full > 0 else set()
    removable = []
    for bid, kind, created in backups:
        if bid in keep_always:
            continue
        if (kind == "full" and bid not in newest_fulls) or \
                (max_age_days > 0 and now - created > max_age_days * DAY):
            removable.append(bid)
    while removable and len(backups) - len(removable) < min_keep:
        removable.pop()  # the newest removable one is kept
    return set(removable)


@pytest.mark.parametrize("order", [
    [("full", 0), ("full", -DAY), ("full", 3653 * DAY), ("full", DAY)],
    [("full", 3653 * DAY), ("full", 0), ("incremental", -DAY), ("full", -2 * DAY)],
], ids=["t,t-1d,t+10y,t+1d", "t+10y,t,t-1d(incr),t-2d"])
def test_f27_retention_orders_by_seq_whatever_the_clock(fl, order):
    """Backups stamped by $FLOWLOOM_NOW at times that jump back and forward.
    list orders by seq (not by id or time); neither the backup's own
    retention step nor any cleanup, at any `now`, removes the newest backup
    or the newest full by seq; what is removed is exactly SPEC's rule."""
    write_config(fl)  # no retention key: keep_full 10, max_age_days 30, min_keep 1
    small_session(fl)
    made = []  # (id, type, created) in the order made
    for kind, offset in order:
        now = T0 + offset
        res = fl.backup(kind, sid="S", now=now)
        live = {x for x in listed(fl)}
        removed = spec_plan(made + [(res["id"], kind, now)], now, 10, 30, 1)
        made = [b for b in made + [(res["id"], kind, now)] if b[0] not in removed]
        assert res["id"] in live and listed(fl)[-1] == res["id"]
        assert listed(fl) == [b[0] for b in made], (listed(fl), made)
        assert [m["seq"] for m in (fl.manifest("S", b) for b in listed(fl))] == \
            sorted(fl.manifest("S", b)["seq"] for b in listed(fl))
    if len(made) > 2:
        # the ids (timestamps) are not in seq order: list does not sort by them
        assert sorted(b[0] for b in made) != [b[0] for b in made]
    newest = made[-1][0]
    newest_full = [b for b in made if b[1] == "full"][-1][0]
    for now in (T0 - 10 * DAY, T0, T0 + 40 * DAY, T0 + 3653 * DAY + 40 * DAY,
                T0 + 20 * 3653 * DAY):
        for keep_full, max_age in ((1, 30), (10, 30), (1, 0), (10, 1)):
            r = fl.run("cleanup", "--session", "S", "--dry-run", "--json",
                       "--keep-full", str(keep_full), "--max-age", str(max_age),
                       env={"FLOWLOOM_NOW": str(now)})
            assert r.rc == 0, r
            rep = r.json()
            removed = {x["id"] for x in rep["removed"]}
            kept = {x["id"]: x["rule"] for x in rep["kept"]}
            desc = (now - T0, keep_full, max_age, rep)
            assert newest in kept and newest_full in kept, desc
            assert removed == spec_plan(made, now, keep_full, max_age, 1), desc
    # and for real, with the harshest policy and a clock 20 years ahead
    r = fl.run("cleanup", "--session", "S", "--keep-full", "1", "--max-age", "1",
               env={"FLOWLOOM_NOW": str(T0 + 20 * 3653 * DAY)})
    assert r.rc == 0, r
    assert listed(fl) == [b[0] for b in made if b[0] in (newest_full, newest)]
    assert_invariants(fl)
