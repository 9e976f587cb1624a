"""F4 and A6-A8: `recover` killed at every step, and restores that must not
grant anything. F4 kills the restore (into the session dir and into
--target) at the entry of each renameat2, renameat, unlinkat, openat, write
and fsync, one syscall and one call number at a time (H1), in the CLI
itself and, separately, in the extraction child it forks: after every kill
the destination is exactly the old tree or exactly the restored one, partial
trees exist only as `.restore-*` staging dirs, and a re-run succeeds. A6-A8
restore, as root, backups holding a FIFO or a device node (crafted: the
backup command never stores them), setuid/setgid/sticky/o+w modes and
foreign owners (real backups)."""
import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile

import pytest

from fbhelpers import FlowLoom, tree_snapshot
from relhelpers import (KILLED, assert_invariants, clone, kill_point, listed, small_session,
                        write_config)

NOW = 1_800_000_000
SYSCALLS = ["renameat2", "renameat", "unlinkat", "openat", "write", "fsync"]
CAP = 250  # call numbers per syscall; a small session needs about 110 openat
SESSION_STAGING = re.compile(r"^\.restore-S-[0-9a-f]{16}$")
TARGET_STAGING = re.compile(r"^\.restore-[0-9a-f]{16}$")


def mutate(sdir):
    """The session moves on after the backup: content, mode, a symlink, an
    added and a removed file, a new directory."""
    (sdir / "state.json").write_text('{"step": 99, "status": "diverged"}\n')
    os.chmod(sdir / "artifacts" / "models" / "weights.bin", 0o600)
    (sdir / "logs" / "tool-output.txt").unlink()
    (sdir / "artifacts" / "added.bin").write_bytes(b"\x07" * 20000)
    os.unlink(sdir / "artifacts" / "latest-weights")
    os.symlink("blob.dat", sdir / "artifacts" / "latest-weights")
    (sdir / "newdir").mkdir()
    (sdir / "newdir" / "f.json").write_text("{}")


def snapshot_with_root(top):
    """tree_snapshot plus the mode of top itself (a full restore keeps the
    session dir's own mode) and whether the session's hardlink pair is still
    one inode; None when top does not exist."""
    if not os.path.lexists(top):
        return None
    snap = tree_snapshot(top)
    snap[b"."] = ("root", stat.S_IMODE(os.lstat(top).st_mode))
    pair = [os.path.join(top, "artifacts", n) for n in ("blob.dat", "blob-hardlink.dat")]
    snap[b"<hardlinked>"] = all(os.path.lexists(p) for p in pair) and \
        os.lstat(pair[0]).st_ino == os.lstat(pair[1]).st_ino
    return snap


@pytest.fixture
def f4_base(fl, need_strace):
    """S with one full backup B (its tree saved as `golden`), then moved on
    (`old`); a completed restore must turn old into golden."""
    write_config(fl)
    sdir = small_session(fl)
    bid = fl.backup("full", sid="S", now=NOW)["id"]
    golden = snapshot_with_root(sdir)
    mutate(sdir)
    old = snapshot_with_root(sdir)
    assert old != golden
    # the control: an uninterrupted restore of a copy gives exactly golden
    probe = clone(fl, fl.root.parent / "probe")
    r = probe.run("recover", "--session", "S", bid, "-q")
    assert r.rc == 0, r
    assert snapshot_with_root(probe.sessions / "S") == golden
    shutil.rmtree(probe.root)
    return fl, bid, golden, old


def store_shape(work):
    """What a kill can leave in the session's store, ids abstracted: the
    kinds of names present (a complete or partial backup dir, .tmp-*,
    .trash-*) and how many backups index.json lists."""
    d = work.store / "S"
    kinds = []
    for name in sorted(os.listdir(d)):
        if name.startswith((".tmp-", ".trash-")):
            kinds.append((name[:5], tuple(sorted(os.listdir(d / name)))
                          if os.path.isdir(d / name) else "file"))
        elif name[:1].isdigit():
            kinds.append(("backup", tuple(sorted(os.listdir(d / name)))))
        else:
            kinds.append((name,))
    idx = json.loads((d / "index.json").read_bytes())
    return tuple(sorted(kinds)), len(idx["backups"])


def strace_cmd(log, syscall, n, follow):
    return ["strace", *(["-f"] if follow else []), "-qq", "-o", str(log),
            "-e", "trace=" + syscall, "-e", f"inject={syscall}:signal=SIGKILL:when={n}"]


def child_call_range(work, args, log, syscall):
    """With strace -f, call numbers are counted per process. Returns the
    numbers that land in the extraction child: those after the CLI's own
    calls before the fork, up to the child's count (empty when the child
    makes no more calls than the CLI made before forking it)."""
    r = work.run(*args, prefix=["strace", "-f", "-qq", "-o", str(log),
                                "-e", f"trace=execve,{syscall}"])
    assert r.rc == 0, r
    calls = [re.match(r"^(\d+)\s+(.*)$", ln).groups()
             for ln in log.read_text(errors="replace").splitlines()
             if "resumed>" not in ln and "+++" not in ln and "---" not in ln]
    cli = calls[0][0]  # the execve strace starts
    assert calls[0][1].startswith("execve("), calls[0]
    calls = [(pid, call) for pid, call in calls[1:] if call.startswith(syscall + "(")]
    child = next((pid for pid, _ in calls if pid != cli), None)
    if child is None:
        return range(0)
    before_fork = 0
    for pid, _ in calls:
        if pid == child:
            break
        before_fork += pid == cli
    n_child = sum(1 for pid, _ in calls if pid == child)
    return range(before_fork + 1, n_child + 1)


def f4_loop(base, tmp_path, args, check_state, check_rerun):
    """Kills `args` at each call number of each syscall, in the CLI (strace
    without -f: the child is not traced) and then in the extraction child
    (-f, only the numbers that land in the child). check_state(work, desc,
    completed, child_killed) after each run, check_rerun(work, desc) after
    each kill. Stops a syscall at the first run that completes."""
    fl = base
    log = tmp_path / "strace.log"
    points = {}
    for sc in SYSCALLS:
        for n in range(1, CAP + 1):
            work = clone(fl, tmp_path / "work")
            r = work.run(*args, prefix=strace_cmd(log, sc, n, follow=False))
            desc = f"{sc} #{n} in the CLI"
            if r.rc == 0:
                check_state(work, desc + " (completed)", completed=True)
                break
            assert r.rc in KILLED, f"{desc}: exit {r.rc}, not the injected SIGKILL\n{r}"
            desc += ": " + kill_point(log)
            points.setdefault(sc, []).append(n)
            check_state(work, desc, completed=False)
            check_rerun(work, desc)
        else:
            pytest.fail(f"{sc}: recover was still being killed at call {CAP}")
        work = clone(fl, tmp_path / "work")
        for n in child_call_range(work, args, log, sc):
            work = clone(fl, tmp_path / "work")
            r = work.run(*args, prefix=strace_cmd(log, sc, n, follow=True))
            desc = f"{sc} #{n} in the extraction child"
            # The CLI survives its child's death and reports it, unless its
            # own n-th call (counted per process) comes while it cleans up.
            if r.rc not in KILLED:
                assert r.rc == 5, f"{desc}: {r}"
                assert "extraction process was killed by signal 9" in r.err, f"{desc}: {r}"
            points.setdefault(sc + " (child)", []).append(n)
            check_state(work, desc, completed=False, child_killed=r.rc == 5)
            check_rerun(work, desc)
    # Both the CLI and its child were killed somewhere: a loop that killed
    # nothing would pass without testing anything. (Not every syscall of the
    # set is called: a restore into an absent target unlinks nothing.)
    assert any(not k.endswith("(child)") for k in points), "the CLI was never killed"
    assert any(k.endswith("(child)") for k in points), "the extraction child was never killed"
    print(f"\nkill points: {sum(len(v) for v in points.values())}")
    for k, v in points.items():
        print(f"  {k}: {len(v)} (calls {v[0]}..{v[-1]})")
    return points


@pytest.mark.slow
def test_f4_sigkill_during_recover_into_the_session_dir(f4_base, tmp_path):
    fl, bid, golden, old = f4_base
    args = ("recover", "--session", "S", bid, "-q")
    store_before = tree_snapshot(fl.store)
    stats = {"old": 0, "restored": 0, "staging left": 0}
    shapes_checked = set()

    def check_store(work, desc):
        if tree_snapshot(work.store) != store_before:
            # A safety backup was (being) written. Its kill points are F1's,
            # checked there one by one; here the invariants run once per
            # distinct shape of the store, which is what a kill can change.
            shape = store_shape(work)
            if shape not in shapes_checked:
                shapes_checked.add(shape)
                assert_invariants(work, context=desc)

    def check_state(work, desc, completed, child_killed=False):
        now = snapshot_with_root(work.sessions / "S")
        names = os.listdir(work.sessions)
        extra = sorted(n for n in names if n != "S")
        check_store(work, desc)
        if completed:
            assert now == golden, desc
            assert extra == [], f"{desc}: {extra}"
            return
        assert now in (old, golden), f"{desc}: the session dir is neither the old tree " \
                                     "nor the restored one"
        stats["old" if now == old else "restored"] += 1
        bad = [n for n in extra if not SESSION_STAGING.match(n)]
        assert not bad, f"{desc}: unexpected names beside the session dir: {bad}"
        if child_killed:
            # the CLI removed its staging dir and took no safety backup
            assert extra == [] and now == old, desc
            assert tree_snapshot(work.store) == store_before, desc
        stats["staging left"] += bool(extra)

    def check_rerun(work, desc):
        r = work.run(*args)
        assert r.rc == 0, f"{desc}: the re-run failed\n{r}"
        assert snapshot_with_root(work.sessions / "S") == golden, desc
        assert sorted(os.listdir(work.sessions)) == ["S"], f"{desc}: staging dirs left"
        assert bid in listed(work), desc

    f4_loop(fl, tmp_path, args, check_state, check_rerun)
    print("session dir after a kill:", stats, f"; {len(shapes_checked)} store shapes checked")
    # both outcomes were hit: kills before and after the swap
    assert stats["old"] and stats["restored"], stats


@pytest.mark.slow
@pytest.mark.parametrize("initial", ["absent", "empty"])
def test_f4_sigkill_during_recover_to_a_target(f4_base, tmp_path, initial):
    fl, bid, golden, old = f4_base
    out = fl.root / "out"
    out.mkdir()
    if initial == "empty":
        (out / "T").mkdir()
    # relative to the root each run works in (a fresh copy of fl's)
    args = ("recover", "--session", "S", bid, "--target", "out/T", "-q")
    store_before = tree_snapshot(fl.store)
    golden_tree = {k: v for k, v in golden.items() if k != b"."}
    stats = {"absent": 0, "empty": 0, "complete": 0, "staging left": 0}

    def target_state(work):
        t = work.root / "out" / "T"
        if not os.path.lexists(t):
            return "absent"
        assert not os.path.islink(t)
        snap = {k: v for k, v in snapshot_with_root(t).items() if k != b"."}
        if snap == {b"<hardlinked>": False}:
            return "empty"
        return "complete" if snap == golden_tree else snap

    def check_state(work, desc, completed, child_killed=False):
        state = target_state(work)
        extra = sorted(n for n in os.listdir(work.root / "out") if n != "T")
        # nothing else is ever touched: not the session, not the store
        assert snapshot_with_root(work.sessions / "S") == old, desc
        assert tree_snapshot(work.store) == store_before, desc
        if completed:
            assert state == "complete" and extra == [], (desc, extra)
            return
        allowed = ("absent", "complete") + (("empty",) if initial == "empty" else ())
        assert state in allowed, f"{desc}: T is half-restored: {state}"
        stats[state] += 1
        bad = [n for n in extra if not TARGET_STAGING.match(n)]
        assert not bad, f"{desc}: unexpected names beside T: {bad}"
        if child_killed:
            assert extra == [] and state == initial, desc
        stats["staging left"] += bool(extra)

    def check_rerun(work, desc):
        t = work.root / "out" / "T"
        dest = t if target_state(work) in ("absent", "empty") else work.root / "out" / "T2"
        r = work.run("recover", "--session", "S", bid, "--target", dest, "-q")
        assert r.rc == 0, f"{desc}: the re-run failed\n{r}"
        assert {k: v for k, v in snapshot_with_root(dest).items() if k != b"."} == golden_tree
        if dest != t:
            # T was complete: a second restore into it is refused, not merged
            r = work.run("recover", "--session", "S", bid, "--target", t, "-q")
            assert r.rc == 2 and "not empty" in r.err, r

    f4_loop(fl, tmp_path, args, check_state, check_rerun)
    print("target after a kill:", stats)
    assert stats["complete"] and stats[initial], stats


# ---- A6: FIFO and device entries (crafted) ----

def craft_backup(fl, sid, bid, members):
    """Replaces backup bid's archive by a hand-made pax tar in one zstd frame
    with a seek table, and its manifest and index record by ones that match
    it byte for byte, so that only the restore's own rules can refuse it.
    members: dicts with name (tar), path (manifest), tar_type, type
    (manifest), mode, data, uid, gid, devmajor/devminor."""
    buf = io.BytesIO()
    entries = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for mem in members:
            data = mem.get("data", b"")
            ti = tarfile.TarInfo(mem["name"])
            ti.type = mem["tar_type"]
            ti.mode = mem["mode"]
            ti.mtime, ti.uname, ti.gname = NOW, "", ""
            ti.uid, ti.gid = mem.get("uid", 0), mem.get("gid", 0)
            ti.devmajor, ti.devminor = mem.get("devmajor", 0), mem.get("devminor", 0)
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)
            e = {"path": mem["path"], "type": mem["type"], "mode": mem["mode"],
                 "uid": ti.uid, "gid": ti.gid, "mtime": NOW, "mtime_nsec": 0,
                 "size": len(data)}
            if mem["type"] == "file":
                e["sha256"] = hashlib.sha256(data).hexdigest()
                e["offset"] = tf.offset - (len(data) + 511) // 512 * 512
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
    m["totals"] = {"files": len(files), "dirs": sum(e["type"] == "dir" for e in entries),
                   "symlinks": sum(e["type"] == "symlink" for e in entries),
                   "bytes": sum(e["size"] for e in files)}
    mpath.write_text(json.dumps(m))
    ipath = fl.store / sid / "index.json"
    idx = json.loads(ipath.read_bytes())
    for rec in idx["backups"]:
        if rec["id"] == bid:
            rec.update(files=m["totals"]["files"], bytes=m["totals"]["bytes"],
                       stored_bytes=len(archive), archive_sha256=m["archive"]["sha256"])
    ipath.write_text(json.dumps(idx))


def special_files(top):
    r = subprocess.run(["find", str(top), "(", "-type", "b", "-o", "-type", "c", "-o",
                        "-type", "p", "-o", "-type", "s", ")", "-print"],
                       capture_output=True, text=True)
    return r.stdout.split()


OK_FILE = {"name": "ok.txt", "path": "ok.txt", "tar_type": tarfile.REGTYPE, "type": "file",
           "mode": 0o644, "data": b"fine\n"}
SPECIALS = {
    "fifo": {"name": "pipe", "path": "pipe", "tar_type": tarfile.FIFOTYPE, "type": "file",
             "mode": 0o644},
    "char device": {"name": "null", "path": "null", "tar_type": tarfile.CHRTYPE,
                    "type": "file", "mode": 0o666, "devmajor": 1, "devminor": 3},
    "block device": {"name": "disk", "path": "disk", "tar_type": tarfile.BLKTYPE,
                     "type": "file", "mode": 0o660, "devmajor": 7, "devminor": 0},
    # a manifest that names the type itself: the strict parser knows no such type
    "fifo in the manifest": {"name": "pipe", "path": "pipe", "tar_type": tarfile.FIFOTYPE,
                             "type": "fifo", "mode": 0o644},
}


@pytest.fixture
def as_root(need_root):
    return True


@pytest.mark.parametrize("kind", list(SPECIALS))
@pytest.mark.parametrize("where", ["session", "target"])
def test_a6_fifo_and_device_entries_are_never_created(fl, tmp_path, as_root, kind, where):
    write_config(fl)
    sdir = small_session(fl)
    bid = fl.backup("full", sid="S", now=NOW)["id"]
    craft_backup(fl, "S", bid, [OK_FILE, SPECIALS[kind], dict(OK_FILE, name="z.txt",
                                                               path="z.txt")])
    session_before, store_before = tree_snapshot(sdir), tree_snapshot(fl.store)
    target = tmp_path / "T"
    args = ["recover", "--session", "S", bid] + (["--target", target] if where == "target"
                                                 else [])
    r = fl.run(*args, env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 1, r
    assert r.err.startswith("flowloom-backup: ") and bid in r.err, r
    # names the entry ("pipe: type differs") or the manifest field
    named = '"fifo"' if SPECIALS[kind]["type"] == "fifo" else SPECIALS[kind]["path"] + ": "
    assert named in r.err, r
    assert special_files(fl.root) == [] and special_files(tmp_path) == []
    assert not target.exists()
    assert tree_snapshot(sdir) == session_before
    assert tree_snapshot(fl.store) == store_before  # not even a safety backup
    assert sorted(os.listdir(fl.sessions)) == ["S"]
    assert sorted(os.listdir(tmp_path)) == ["root"]


def test_a6_control_the_same_crafting_without_special_files_restores(fl, tmp_path, as_root):
    write_config(fl)
    small_session(fl)
    bid = fl.backup("full", sid="S", now=NOW)["id"]
    craft_backup(fl, "S", bid, [OK_FILE, dict(OK_FILE, name="z.txt", path="z.txt")])
    r = fl.run("recover", "--session", "S", bid, "--target", tmp_path / "T")
    assert r.rc == 0, r
    assert sorted(os.listdir(tmp_path / "T")) == ["ok.txt", "z.txt"]


# ---- A7, A8: modes and owners (real backups, restored as root) ----

MODES = {"suid.sh": 0o4755, "sgid.bin": 0o2755, "world.txt": 0o666, "all.bin": 0o7777,
         "sticky-dir": 0o1777, "sgid-dir": 0o2777, "plain.txt": 0o640}


@pytest.fixture
def odd_modes_backup(fl, as_root):
    write_config(fl)
    sdir = fl.sessions / "S"
    sdir.mkdir()
    (sdir / "metadata.json").write_text("{}\n")
    for name, mode in MODES.items():
        p = sdir / name
        if name.endswith("-dir"):
            p.mkdir()
            (p / "inside.txt").write_text(name)
            os.lchown(p / "inside.txt", 12345, 23456)
        else:
            p.write_text(name)
        # chown first: it clears the setuid and setgid bits
        os.lchown(p, *((0, 0) if name == "plain.txt" else (12345, 23456)))
        os.chmod(p, mode)
    bid = fl.backup("full", sid="S", now=NOW)["id"]
    m = fl.manifest("S", bid)
    stored = {e["path"]: e for e in m["entries"]}
    # the backup keeps the exact modes and owners; only the restore drops them
    for name, mode in MODES.items():
        assert stored[name]["mode"] == mode, name
    assert stored["suid.sh"]["uid"] == 12345 and stored["suid.sh"]["gid"] == 23456
    return fl, bid, stored


def privileged_modes(top):
    """`find T -perm /7002` without symlinks (whose mode is always 0777)."""
    r = subprocess.run(["find", str(top), "-mindepth", "1", "!", "-type", "l",
                        "-perm", "/7002"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\n")[:-1]


def restored_modes(top):
    out = {}
    for p in sorted(top.rglob("*")):
        st = os.lstat(p)
        out[str(p.relative_to(top))] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


@pytest.mark.parametrize("where", ["target", "session"])
def test_a7_a8_no_privileged_modes_and_the_invoking_user_owns(odd_modes_backup, tmp_path, where):
    fl, bid, stored = odd_modes_backup
    if where == "target":
        top = tmp_path / "T"
        r = fl.run("recover", "--session", "S", bid, "--target", top)
    else:
        top = fl.sessions / "S"
        for p in top.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        r = fl.run("recover", "--session", "S", bid, "--no-safety-backup")
    assert r.rc == 0, r
    assert privileged_modes(top) == []
    got = restored_modes(top)
    for path, e in stored.items():
        mode, uid, gid = got[path]
        assert mode == e["mode"] & 0o775, (path, oct(mode), oct(e["mode"]))
        assert (uid, gid) == (os.geteuid(), os.getegid()), (path, uid, gid)
    assert fl.run("verify", "--session", "S").rc == 0


def test_a8_same_owner_restores_the_stored_owners_but_never_the_bits(odd_modes_backup, tmp_path):
    fl, bid, stored = odd_modes_backup
    top = tmp_path / "T"
    r = fl.run("recover", "--session", "S", bid, "--target", top, "--same-owner")
    assert r.rc == 0, r
    got = restored_modes(top)
    for path, e in stored.items():
        assert got[path] == (e["mode"] & 0o775, e["uid"], e["gid"]), path
    assert privileged_modes(top) == []


def test_a8_restored_as_nobody_belongs_to_nobody(shared_tmp, fb_bin, as_root):
    """A backup of files owned by uid 12345 (and root), restored by nobody
    from a store nobody can read: everything belongs to nobody."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is not installed (util-linux)")
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run(as_nobody + ["true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot switch to nobody here: {probe.stderr!r}")
    binary = shared_tmp / "flowloom-backup"
    shutil.copy2(fb_bin, binary)
    os.chmod(binary, 0o755)
    fl = FlowLoom(shared_tmp / "root", binary)
    write_config(fl)
    sdir = small_session(fl)
    for p in [sdir, *sdir.rglob("*")]:
        os.lchown(p, 12345, 23456)
    os.chmod(sdir / "state.json", 0o4757)
    bid = fl.backup("full", sid="S", now=NOW)["id"]
    assert {e["uid"] for e in fl.manifest("S", bid)["entries"]} == {12345}
    subprocess.run(["chown", "-R", "nobody:nogroup", str(fl.root)], check=True)
    nobody = (65534, 65534)
    assert os.stat(fl.root).st_uid == nobody[0]
    top = fl.root / "T"
    r = fl.run("recover", "--session", "S", bid, "--target", top, prefix=as_nobody)
    assert r.rc == 0, r
    got = restored_modes(top)
    assert got and all((uid, gid) == nobody for _, uid, gid in got.values()), got
    assert got["state.json"][0] == 0o755
    assert privileged_modes(top) == []


# The extraction child must end with the process that called recover, however
# it dies (issue 8: PR_SET_PDEATHSIG followed the forking thread instead). A
# helper process makes itself the subreaper, so that the orphaned child is
# reparented to it and its exit status can be read: 120 means the child saw
# its caller go and stopped.
ORPHAN_PROBE = r'''
import ctypes, os, signal, subprocess, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
rec = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
child = None
deadline = time.monotonic() + 30
while child is None and time.monotonic() < deadline and rec.poll() is None:
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == rec.pid:
                child = int(d)
                os.kill(child, signal.SIGSTOP)
                break
if child is None:
    print("no-child", rec.wait())
    sys.exit(0)
os.kill(rec.pid, signal.SIGKILL)
rec.wait()
os.kill(child, signal.SIGCONT)
_, status = os.waitpid(child, 0)
print("child-exit", os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
'''


def test_extraction_child_ends_when_recover_is_killed(fl, tmp_path):
    sdir = fl.session("S", realistic=False)
    (sdir / "state.json").write_text("{}")
    with open(sdir / "big.log", "w") as f:
        line = "a line of the agent's log that compresses well enough\n"
        f.write(line * (160 * 1024 * 1024 // len(line)))
    fl.backup("full", sid="S", now=NOW)
    target = tmp_path / "target"
    env = fl.env()
    argv = [sys.executable, "-c", ORPHAN_PROBE, str(fl.bin), "--root", str(fl.root),
            "recover", "--session", "S", "latest", "--target", str(target)]
    for _ in range(3):  # a fast machine may finish before the child is seen
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        out = r.stdout.split()
        assert r.returncode == 0 and out, r
        if out[0] == "child-exit":
            assert out[1] == "120", r
            break
        shutil.rmtree(target, ignore_errors=True)
    else:
        pytest.fail("the extraction child was never caught running")
    assert not target.exists() or not any(p.name for p in target.iterdir()
                                          if not p.name.startswith(".restore-"))
