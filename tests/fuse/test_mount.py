"""flowloom-backupfs on real mounts (issue 3): the tree, its metadata and
contents checked with ordinary tools (find, diff, cp, rsync, sha256sum,
stat), read-only enforcement, liveness, concurrency and corruption."""
import errno
import json
import os
import pathlib
import random
import stat
import subprocess
import threading
import time

import pytest

from fusehelpers import (Mount, daemon_pids_for, frames_of, is_mounted, mount_options,
                         pid_alive, read_seek_table)
from fbhelpers import sha256_file, tree_snapshot


def entry_paths(manifest):
    return {e["path"] for e in manifest["entries"]}


def implied_dirs(paths):
    out = set()
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def poll(cond, timeout=1.5, step=0.02):
    """True as soon as cond() holds, False after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


# ---------------------------------------------------------------- shape


def test_root_and_session_listings(populated, mounts):
    m = mounts(populated.store)
    assert sorted(os.listdir(m.mnt)) == ["S1", "S2", "S3"]
    for sid in ("S1", "S2", "S3"):
        names = sorted(os.listdir(m.path(sid)))
        ids = populated.ids(sid)
        fulls = populated.ids(sid, "full")
        want = sorted(ids + ["latest", "as-of", "history"] + (["latest-full"] if fulls else []))
        assert names == want
        assert os.readlink(m.path(sid, "latest")) == ids[-1]
        if fulls:
            assert os.readlink(m.path(sid, "latest-full")) == fulls[-1]
        # latest resolves through the mount like any relative symlink
        assert os.path.isdir(m.path(sid, "latest"))


def test_find_lists_exactly_the_manifest_entries(populated, mounts):
    m = mounts(populated.store)
    for sid in ("S1", "S2", "S3"):
        for bid in populated.ids(sid):
            man = populated.manifest(sid, bid)
            paths = entry_paths(man)
            r = run("find", m.path(sid, bid), "-mindepth", "1", "-printf", "%P\\n")
            assert r.returncode == 0, r.stderr
            found = set(r.stdout.splitlines())
            # incrementals may hold a file without its directory's entry:
            # such directories are shown, nothing else is
            assert found == paths | implied_dirs(paths), (sid, bid)
            if man["type"] == "full":
                assert found == paths


def test_diff_r_of_full_backups_against_source_is_empty(populated, mounts):
    m = mounts(populated.store)
    for sid in ("S1", "S2"):
        for bid in populated.ids(sid, "full"):
            src = populated.snapshots[(sid, bid)]
            r = run("diff", "-r", "--no-dereference", m.path(sid, bid), src)
            assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    # and the latest full against the live session
    r = run("diff", "-r", "--no-dereference", str(m.path("S1", "latest-full")) + "/",
            populated.fl.sessions / "S1")
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


def test_cp_a_and_rsync_a_reproduce_content_modes_mtimes(populated, mounts, tmp_path):
    m = mounts(populated.store)
    sid, bid = "S1", populated.ids("S1", "full")[0]
    want = tree_snapshot(populated.snapshots[(sid, bid)])
    assert len(want) > 10
    cp_dst = tmp_path / "cp"
    r = run("cp", "-a", m.path(sid, bid), cp_dst)
    assert r.returncode == 0, r.stderr
    assert tree_snapshot(cp_dst) == want
    # cp -a keeps the hardlink a hardlink
    a = os.stat(cp_dst / "artifacts" / "blob.dat")
    b = os.stat(cp_dst / "artifacts" / "blob-hardlink.dat")
    assert a.st_ino == b.st_ino and a.st_nlink == 2

    # rsync -a, as the issue says (with -H, rsync makes hardlinks in a last
    # pass that bumps their directory's mtime after it was set)
    rs_dst = tmp_path / "rsync"
    r = run("rsync", "-a", str(m.path(sid, bid)) + "/", str(rs_dst) + "/")
    assert r.returncode == 0, r.stderr
    assert tree_snapshot(rs_dst) == want


def test_sha256sum_of_every_file_matches_the_manifest(populated, mounts):
    m = mounts(populated.store)
    checked = 0
    for sid in ("S1", "S2", "S3"):
        for bid in populated.ids(sid):
            man = populated.manifest(sid, bid)
            by_path = {e["path"]: e for e in man["entries"]}
            files = [e for e in man["entries"] if e["type"] in ("file", "hardlink")]
            r = run("sha256sum", "--", *[m.path(sid, bid, e["path"]) for e in files])
            assert r.returncode == 0, r.stderr
            sums = [line.split(maxsplit=1)[0] for line in r.stdout.splitlines()]
            for e, s in zip(files, sums):
                src = by_path[e["link"]] if e["type"] == "hardlink" else e
                assert s == src["sha256"], (sid, bid, e["path"])
                checked += 1
    assert checked > 20


def test_metadata_matches_the_manifest(populated, mounts):
    m = mounts(populated.store)
    for sid in ("S1", "S2", "S3"):
        for bid in populated.ids(sid):
            man = populated.manifest(sid, bid)
            by_path = {e["path"]: e for e in man["entries"]}
            for e in man["entries"]:
                st = os.lstat(m.path(sid, bid, e["path"]))
                src = by_path[e["link"]] if e["type"] == "hardlink" else e
                kind = {"file": stat.S_ISREG, "hardlink": stat.S_ISREG, "dir": stat.S_ISDIR,
                        "symlink": stat.S_ISLNK}[e["type"]]
                assert kind(st.st_mode), e["path"]
                if e["type"] != "symlink":
                    assert stat.S_IMODE(st.st_mode) == src["mode"], e["path"]
                assert (st.st_uid, st.st_gid) == (src["uid"], src["gid"]), e["path"]
                assert st.st_mtime_ns == src["mtime"] * 10**9 + src["mtime_nsec"], e["path"]
                if e["type"] in ("file", "hardlink"):
                    assert st.st_size == src["size"], e["path"]
            created = populated.backups[sid][populated.ids(sid).index(bid)]["created_at"]
            st = os.stat(m.path(sid, bid))
            assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)) == created
        newest = populated.backups[sid][-1]["created_at"]
        st = os.stat(m.path(sid))
        assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)) == newest
    # the nanoseconds the fixture set on state.json come back
    bid = populated.ids("S1", "full")[0]
    assert os.stat(m.path("S1", bid, "state.json")).st_mtime_ns == 1_700_000_000_123_456_789


def test_symlinks_and_hardlinks(populated, mounts):
    m = mounts(populated.store)
    for bid in populated.ids("S1", "full"):
        man = populated.manifest("S1", bid)
        for e in man["entries"]:
            if e["type"] == "symlink":
                assert os.readlink(m.path("S1", bid, e["path"])) == e["target"]
        a = os.stat(m.path("S1", bid, "artifacts", "blob.dat"))
        b = os.stat(m.path("S1", bid, "artifacts", "blob-hardlink.dat"))
        assert a.st_ino == b.st_ino
        assert a.st_nlink == b.st_nlink == 2
        # distinct files have distinct inode numbers
        inos = {}
        for e in man["entries"]:
            if e["type"] == "file":
                ino = os.lstat(m.path("S1", bid, e["path"])).st_ino
                assert ino not in inos, (e["path"], inos.get(ino))
                inos[ino] = e["path"]
    # the link points where it was stored, and reads through the mount
    bid = populated.ids("S1", "full")[0]
    link = m.path("S1", bid, "artifacts", "latest-weights")
    assert os.readlink(link) == "models/weights.bin"
    with open(link, "rb") as f:
        assert f.read() == (populated.snapshots[("S1", bid)] / "artifacts" / "models"
                            / "weights.bin").read_bytes()


def test_statfs_reports_the_store_filesystem(populated, mounts):
    m = mounts(populated.store)
    a = os.statvfs(m.mnt)
    b = os.statvfs(populated.store)
    assert (a.f_bsize, a.f_blocks, a.f_files) == (b.f_bsize, b.f_blocks, b.f_files)


def test_name_lookup_edges_and_reads_past_eof(populated, mounts):
    m = mounts(populated.store)
    bid = populated.ids("S1", "full")[0]
    with pytest.raises(OSError) as ei:
        os.stat(m.path("S1", bid, "a" * 256))
    assert ei.value.errno == errno.ENAMETOOLONG
    with pytest.raises(FileNotFoundError):
        os.stat(m.path("S1", bid, "a" * 255))
    with pytest.raises(FileNotFoundError):
        os.stat(m.path("S1", "20270115T000000Z-full-000000"))
    with pytest.raises(FileNotFoundError):
        os.stat(m.path("nosuchsession"))
    p = m.path("S1", bid, "metadata.json")
    size = os.stat(p).st_size
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.pread(fd, 100, size) == b""
        assert os.pread(fd, 100, size + 12345) == b""
        assert os.pread(fd, 0, 0) == b""
        assert len(os.pread(fd, 10, size - 3)) == 3
    finally:
        os.close(fd)
    with open(m.path("S1", bid, "artifacts", "empty.bin"), "rb") as f:
        assert f.read() == b""


def test_odd_names_and_mmap(fl, mounts):
    """Names with a newline, a tab, spaces and a byte that is not UTF-8 are
    listed and read as stored; a file reads the same through mmap."""
    import mmap
    sdir = fl.session("ODD", realistic=False)
    names = [b"line\nbreak.txt", b"tab\tname", b" spaced out ", b"bad\xffbyte", b"x" * 255]
    for i, n in enumerate(names):
        with open(os.path.join(os.fsencode(str(sdir)), n), "wb") as f:
            f.write(b"content %d\n" % i * (i + 1))
    (sdir / "metadata.json").write_text("{}")
    bid = fl.backup("full", sid="ODD")["id"]
    m = mounts(fl.store)
    top = os.fsencode(str(m.path("ODD", bid)))
    assert sorted(os.listdir(top)) == sorted(names + [b"metadata.json"])
    for i, n in enumerate(names):
        with open(os.path.join(top, n), "rb") as f:
            assert f.read() == b"content %d\n" % i * (i + 1)
    r = subprocess.run(["find", top, "-mindepth", "1", "-print0"], capture_output=True)
    assert sorted(r.stdout.split(b"\0")[:-1]) == sorted(os.path.join(top, n)
                                                      for n in names + [b"metadata.json"])
    src = (sdir / "metadata.json").read_bytes()
    with open(m.path("ODD", bid, "metadata.json"), "rb") as f:
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            assert mm[:] == src


# ------------------------------------------------------------ read-only


def test_writes_fail_with_erofs(populated, mounts):
    m = mounts(populated.store)
    bid = populated.ids("S1", "full")[0]
    b = m.path("S1", bid)
    f = b / "metadata.json"
    before = f.read_bytes()
    shell = [
        f"touch {b}/newfile",
        f"touch {f}",
        f"rm {f}",
        f"rm -r {b}/logs",
        f"mkdir {b}/newdir",
        f"mkdir {m.mnt}/newsession",
        f"mv {f} {b}/renamed.json",
        f"mv {m.path('S1', bid)} {m.path('S1', 'x')}",
        f"chmod 600 {f}",
        f"chown 1:1 {f}",
        f"echo hi > {f}",
        f"echo hi >> {f}",
        f"echo hi > {b}/created",
        f"ln {f} {b}/hard",
        f"ln -s x {b}/soft",
        f"truncate -s 0 {f}",
    ]
    for cmd in shell:
        r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
        assert r.returncode != 0, cmd
        assert "Read-only file system" in r.stderr, (cmd, r.stderr)
    calls = [
        lambda: os.open(f, os.O_WRONLY),
        lambda: os.open(f, os.O_RDWR),
        lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
        lambda: os.open(b / "c", os.O_WRONLY | os.O_CREAT, 0o644),
        lambda: os.mkdir(b / "d"),
        lambda: os.rmdir(b / "logs"),
        lambda: os.unlink(f),
        lambda: os.rename(f, b / "g"),
        lambda: os.chmod(f, 0o600),
        lambda: os.utime(f, (0, 0)),
        lambda: os.symlink("x", b / "s"),
        lambda: os.link(f, b / "h"),
        lambda: os.truncate(f, 0),
        lambda: os.setxattr(f, "user.x", b"1"),
        lambda: os.removexattr(f, "user.x"),
        lambda: os.mknod(b / "fifo", 0o600 | stat.S_IFIFO),
    ]
    for call in calls:
        with pytest.raises(OSError) as ei:
            call()
        assert ei.value.errno == errno.EROFS, ei.value
    assert f.read_bytes() == before
    opts, _ = mount_options_of(m)
    assert {"ro", "nosuid", "nodev"} <= opts
    assert "default_permissions" not in opts


def mount_options_of(m):
    return mount_options(m.mnt)


def test_allow_other_adds_default_permissions(populated, mounts):
    m = mounts(populated.store, options=["-o", "allow_other"])
    opts, source = mount_options_of(m)
    assert {"ro", "nosuid", "nodev", "allow_other", "default_permissions"} <= opts
    assert source.startswith("fuse.flowloom-backupfs")
    # the stored modes are enforced by the kernel for other users: the
    # store dir (0700, root) keeps "nobody" out of the whole tree
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "ls", str(m.path("S1"))], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r


def test_refused_options(populated, fbfs_bin, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for opt in ("rw", "suid", "dev"):
        r = run(fbfs_bin, "-f", "-o", opt, populated.store, mnt, timeout=10)
        assert r.returncode == 2, r
        assert opt in r.stderr and "read-only" in r.stderr
        assert not subprocess.run(["mountpoint", "-q", str(mnt)]).returncode == 0


# ------------------------------------------------------------- liveness


def test_backup_created_and_removed_while_mounted(populated, mounts):
    m = mounts(populated.store)
    s1 = m.path("S1")
    before = set(os.listdir(s1))
    assert set(populated.ids("S1")) <= before
    new = populated.backup("S1", "full")
    assert poll(lambda: new in os.listdir(s1)), os.listdir(s1)
    assert poll(lambda: os.readlink(m.path("S1", "latest")) == new)
    assert poll(lambda: os.readlink(m.path("S1", "latest-full")) == new)
    assert os.path.isfile(m.path("S1", new, "metadata.json"))
    # a stat of the new path (not only a listing) finds it too
    new2 = populated.backup("S1", "incremental")
    assert poll(lambda: os.path.isdir(m.path("S1", new2)))

    gone = populated.ids("S1")[1]  # the first incremental
    os.listdir(m.path("S1", gone))
    populated.remove("S1", gone)
    assert poll(lambda: gone not in os.listdir(s1)), os.listdir(s1)
    assert poll(lambda: not os.path.exists(m.path("S1", gone)))
    # a whole new session appears in the root
    populated.fl.session("S4", log_bytes=1024)
    populated.backup("S4", "full", snapshot=False)
    assert poll(lambda: "S4" in os.listdir(m.mnt))


def test_cleanup_while_mounted_removes_backup(populated, mounts):
    """Retention run by the CLI while mounted."""
    m = mounts(populated.store)
    old_full = populated.ids("S1", "full")[0]
    assert old_full in os.listdir(m.path("S1"))
    populated.remove("S1", old_full)
    assert poll(lambda: old_full not in os.listdir(m.path("S1")))


def test_open_file_keeps_reading_after_its_backup_is_removed(populated, mounts):
    m = mounts(populated.store)
    sid = "S1"
    bid = populated.ids(sid, "full")[0]
    man = populated.manifest(sid, bid)
    e = next(x for x in man["entries"] if x["path"] == "logs/run.log")
    path = m.path(sid, bid, "logs", "run.log")
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        h.update(f.read(e["size"] // 2))
        populated.remove(sid, bid)
        assert not (populated.store / sid / bid).exists()
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            h.update(chunk)
    assert h.hexdigest() == e["sha256"]
    assert poll(lambda: bid not in os.listdir(m.path(sid)))
    assert poll(lambda: not os.path.exists(path))
    with pytest.raises(FileNotFoundError):
        open(path, "rb")
    # the daemon is still serving
    assert m.proc.poll() is None
    assert os.listdir(m.path("S2"))


def test_lazy_manifests_corrupt_manifest_only_affects_its_backup(populated, mounts):
    """Listings read no manifest: a backup with a broken manifest is listed,
    stat-able, and gives EIO only when its contents are needed."""
    bad = populated.ids("S2", "full")[0]
    mf = populated.store / "S2" / bad / "manifest.json"
    mf.write_bytes(mf.read_bytes().replace(b'"entries"', b'"entriez"'))
    m = mounts(populated.store)
    assert bad in os.listdir(m.path("S2"))
    assert os.path.isdir(m.path("S2", bad))
    with pytest.raises(OSError) as ei:
        os.listdir(m.path("S2", bad))
    assert ei.value.errno == errno.EIO
    other = populated.ids("S2", "incremental")[0]
    assert "metadata.json" in os.listdir(m.path("S2", other))


def open_archives(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.endswith("archive.tar.zst") or "archive.tar.zst (deleted)" in target:
            out.append(target)
    return out


def test_archives_are_open_only_while_files_are_read(populated, mounts):
    """Walks open no archive; reading does, one shared per backup; it is
    closed a moment after the last read (the kernel may skip release, so
    the daemon keeps a file read without an open for a second)."""
    m = mounts(populated.store)
    bid = populated.ids("S1", "full")[0]
    subprocess.run(["find", str(m.mnt)], capture_output=True, check=True)
    subprocess.run(["ls", "-lR", str(m.mnt)], capture_output=True, check=True)
    assert open_archives(m.pid) == []
    f1 = open(m.path("S1", bid, "metadata.json"), "rb")
    f2 = open(m.path("S1", bid, "logs", "run.log"), "rb")
    try:
        f1.read()
        arch = open_archives(m.pid)
        assert len(arch) == 1 and bid in arch[0]  # one reader shared by the backup's files
    finally:
        f1.close()
        f2.close()
    # a kept file goes FB_MOUNT_KEPT_SECONDS (1 s) after its last read, its
    # idle reader 0.5 s later
    assert poll(lambda: open_archives(m.pid) == [], 5)


# ---------------------------------------------------- reads, corruption


def test_eight_threads_random_ranges_equal_the_source(populated, mounts):
    m = mounts(populated.store)
    sources = []
    for sid in ("S1", "S2"):
        for bid in populated.ids(sid, "full"):
            snap = populated.snapshots[(sid, bid)]
            for e in populated.manifest(sid, bid)["entries"]:
                if e["type"] == "file" and e["size"] > 0:
                    sources.append((m.path(sid, bid, e["path"]),
                                    (snap / e["path"]).read_bytes()))
    assert len(sources) >= 10
    failures = []

    def worker(seed):
        rng = random.Random(seed)
        for _ in range(150):
            path, data = rng.choice(sources)
            off = rng.randrange(len(data))
            n = rng.randrange(1, 200_000)
            fd = os.open(path, os.O_RDONLY)
            try:
                got = os.pread(fd, n, off)
            finally:
                os.close(fd)
            if got != data[off:off + n]:
                failures.append((str(path), off, n))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_flipped_byte_gives_eio_for_that_file_only(populated, mounts):
    sid = "S1"
    bid = populated.ids(sid, "full")[0]
    man = populated.manifest(sid, bid)
    archive = populated.store / sid / bid / "archive.tar.zst"
    frames = read_seek_table(archive)
    assert len(frames) > 4
    files = [e for e in man["entries"] if e["type"] == "file" and e["size"] > 0]
    victim = next(e for e in files if e["path"] == "artifacts/models/weights.bin")
    hit = frames_of(frames, victim["offset"], victim["size"])
    # corrupt the middle of a frame that holds only the victim's data
    inner = sorted(i for i in hit if frames[i][2] >= victim["offset"]
                   and frames[i][2] + frames[i][3] <= victim["offset"] + victim["size"])
    c_off, c_size, _, _ = frames[inner[len(inner) // 2]]
    with open(archive, "r+b") as f:
        f.seek(c_off + c_size // 2)
        b = f.read(1)
        f.seek(c_off + c_size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    m = mounts(populated.store)
    r = subprocess.run(["cat", str(m.path(sid, bid, victim["path"]))], capture_output=True)
    assert r.returncode != 0
    assert b"Input/output error" in r.stderr
    with pytest.raises(OSError) as ei:
        with open(m.path(sid, bid, victim["path"]), "rb") as f:
            f.read()
    assert ei.value.errno == errno.EIO
    # other files, whose frames are intact, read correctly
    intact = [e for e in files if not (frames_of(frames, e["offset"], e["size"]) & set(inner))]
    assert len(intact) >= 3
    for e in intact:
        assert sha256_file(m.path(sid, bid, e["path"])) == e["sha256"], e["path"]
    # the daemon is fine
    assert m.proc.poll() is None


# ------------------------------------------------------------ lifecycle


def test_without_f_returns_only_when_mounted(populated, fbfs_bin, tmp_path):
    m = Mount(fbfs_bin, populated.store, tmp_path / "bgmnt")
    try:
        m.start(foreground=False)
        assert m.bg_rc == 0, m.log.read_text()
        # the very next line can use the mount
        assert is_mounted(m.mnt)
        assert sorted(os.listdir(m.mnt)) == ["S1", "S2", "S3"]
        assert m.pid is not None and m.pid != os.getpid()
    finally:
        m.stop()
    assert not is_mounted(m.mnt)
    assert m.pid is None or poll(lambda: not os.path.exists(f"/proc/{m.pid}/cmdline")
                                 or open(f"/proc/{m.pid}/cmdline", "rb").read() == b"", 5)


@pytest.mark.parametrize("sig", [15, 2])
def test_sigterm_and_sigint_exit_0_and_unmount(populated, mounts, sig):
    m = mounts(populated.store)
    assert os.listdir(m.path("S1"))
    m.proc.send_signal(sig)
    assert m.proc.wait(timeout=10) == 0, m.log.read_text()
    assert not is_mounted(m.mnt)


def test_single_threaded_and_debug_options(populated, mounts):
    m = mounts(populated.store, options=["-s", "-d"])
    bid = populated.ids("S1", "full")[0]
    e = next(x for x in populated.manifest("S1", bid)["entries"] if x["path"] == "logs/run.log")
    assert sha256_file(m.path("S1", bid, "logs", "run.log")) == e["sha256"]
    # -d makes libfuse log every request
    assert "LOOKUP" in m.log.read_text(errors="replace")


def test_one_worker_with_max_threads_1(populated, mounts, fbfs_bin):
    """-o max_threads=1: our loop with one worker and no watcher still
    serves every request, also eight threads reading at once."""
    m = mounts(populated.store, options=["-o", "max_threads=1"])
    bid = populated.ids("S1", "full")[0]
    entries = [e for e in populated.manifest("S1", bid)["entries"] if e["type"] == "file"]
    results = {}

    def worker(e):
        results[e["path"]] = sha256_file(m.path("S1", bid, *e["path"].split("/")))

    threads = [threading.Thread(target=worker, args=(e,)) for e in entries[:8]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(results[e["path"]] == e["sha256"] for e in entries[:8])
    tasks = len(os.listdir(f"/proc/{m.pid}/task"))
    # main, the one worker, the tree's janitor and at most the prefetch thread
    # (and ThreadSanitizer's own background thread, in that build)
    tsan = b"__tsan_init" in pathlib.Path(fbfs_bin).read_bytes()
    assert tasks <= 4 + tsan, tasks


@pytest.mark.slow
def test_a_slow_request_does_not_hold_up_the_others(fl, mounts):
    """fs/loop.c: one worker answers request after request, and a request
    that takes long (the first listing of a backup of 100,000 entries,
    parsed from its JSON) gives the reading over to another worker, so
    another process's lookup is answered while the listing still loads.
    With one thread (-s) it would wait for the whole load."""
    big = fl.session("BIG", realistic=False)
    (big / "metadata.json").write_text("{}\n")
    for d in range(100):
        sub = big / f"d{d:03d}"
        sub.mkdir()
        for i in range(1000):
            (sub / f"f{i:04d}.json").write_text(f'{{"n": {i}}}\n')
    big_id = fl.backup("full", sid="BIG")["id"]
    fl.session("S1")
    small_id = fl.backup("full", sid="S1")["id"]
    m = mounts(fl.store, options=["-o", "no_manifest_cache"])
    # The small backup is loaded first: its lookups then need no load.
    assert os.stat(m.path("S1", small_id, "metadata.json")).st_size > 0
    ends = {}

    def list_big():
        names = os.listdir(m.path("BIG", big_id))
        ends["listing"] = time.monotonic()
        ends["names"] = len(names)

    t = threading.Thread(target=list_big)
    listing_start = time.monotonic()
    t.start()
    time.sleep(0.01)  # the listing's load is under way (it takes 50 ms or more)
    stat_start = time.monotonic()
    st = os.stat(m.path("S1", small_id, "state.json"))
    stat_took = time.monotonic() - stat_start
    t.join(timeout=60)
    assert not t.is_alive()
    assert stat.S_ISREG(st.st_mode)
    assert ends["names"] == 101
    listing_took = ends["listing"] - listing_start
    print(f"listing {listing_took * 1e3:.1f} ms, the stat meanwhile {stat_took * 1e3:.1f} ms")
    # One thread answers the stat once the load is done: most of the
    # listing's time. A second worker takes over after FS_LOOP_SLOW_MS.
    assert stat_took < listing_took / 3


def test_store_removed_while_mounted(populated, mounts):
    """F19: no crash, no hang; the mount answers and unmounts cleanly."""
    m = mounts(populated.store)
    assert "S1" in os.listdir(m.mnt)
    moved = populated.store.parent / "backups.moved"
    os.rename(populated.store, moved)
    import shutil
    shutil.rmtree(moved)
    t = time.monotonic()
    try:
        listing = os.listdir(m.mnt)
    except OSError as e:
        assert e.errno in (errno.ENOENT, errno.EIO)
        listing = []
    assert listing == []
    assert time.monotonic() - t < 5
    assert m.proc.poll() is None
    r = run("fusermount3", "-u", m.mnt)
    assert r.returncode == 0, r.stderr
    assert m.proc.wait(timeout=10) == 0
    assert not is_mounted(m.mnt)


def test_sigkill_leaves_enotconn_until_unmounted(populated, mounts):
    """F20: a killed daemon leaves a dead mount that fusermount3 -u clears."""
    m = mounts(populated.store)
    m.proc.kill()
    m.proc.wait(timeout=10)
    with pytest.raises(OSError) as ei:
        os.listdir(m.mnt)
    assert ei.value.errno == errno.ENOTCONN
    r = run("fusermount3", "-u", m.mnt)
    assert r.returncode == 0, r.stderr
    assert not is_mounted(m.mnt)


def test_umount_ends_the_daemon_with_0(populated, mounts):
    m = mounts(populated.store)
    with open(m.path("S1", "latest", "metadata.json"), "rb") as f:
        f.read()
    r = run("fusermount3", "-u", m.mnt)
    assert r.returncode == 0, r.stderr
    assert m.proc.wait(timeout=10) == 0
    assert not is_mounted(m.mnt)


def test_mountpoint_overlapping_the_store_is_refused(populated, fbfs_bin, tmp_path):
    store = populated.store
    for mnt in (store, store / "S1", store / "S1" / populated.ids("S1")[0],
                populated.fl.root, populated.fl.flowloom):
        t = time.monotonic()
        r = run(fbfs_bin, "-f", store, mnt, timeout=10)
        assert time.monotonic() - t < 5
        assert r.returncode == 2, r
        assert "store" in r.stderr
        assert not is_mounted(mnt)


def test_bad_arguments(populated, fbfs_bin, tmp_path):
    r = run(fbfs_bin, "--help")
    assert r.returncode == 0 and "cache_size" in r.stdout and "-f" in r.stdout + r.stderr
    r = run(fbfs_bin, "--version")
    assert r.returncode == 0 and "flowloom-backupfs" in r.stdout
    r = run(fbfs_bin, "-f", populated.store)
    assert r.returncode == 2
    r = run(fbfs_bin, "-f", tmp_path, tmp_path / "x")
    assert r.returncode != 0
    (tmp_path / "m").mkdir()
    (tmp_path / "notstore").mkdir()
    r = run(fbfs_bin, "-f", tmp_path / "notstore", tmp_path / "m", timeout=10)
    assert r.returncode == 2 and ".flowloom/backups" in r.stderr
    r = run(fbfs_bin, "-f", "-o", "cache_size=lots", populated.store, tmp_path / "m", timeout=10)
    assert r.returncode == 2


def test_cli_mount_and_umount_wrap_the_daemon(populated, tmp_path):
    """`flowloom-backup mount/umount` start and stop this daemon."""
    mnt = tmp_path / "climnt"
    mnt.mkdir()
    r = populated.fl.run("mount", mnt)
    pids = daemon_pids_for(mnt)
    try:
        assert r.rc == 0, r
        assert is_mounted(mnt)
        assert "S1" in os.listdir(mnt)
    finally:
        populated.fl.run("umount", mnt)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)])
            subprocess.run(["fusermount3", "-uz", str(mnt)])
        for pid in pids:
            if poll(lambda: not pid_alive(pid), 5) is False:
                os.kill(pid, 15)
    assert not is_mounted(mnt)


# ------------------------------------------------------------------ slow


def vm_hwm_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_peak_rss_stays_within_the_cache_bound_reading_256_mib(fl, mounts, fbfs_bin):
    if b"__asan_init" in pathlib.Path(fbfs_bin).read_bytes():
        pytest.skip("peak RSS means nothing under AddressSanitizer (shadow memory, quarantine)")
    size = 256 << 20
    sdir = fl.session("BIG", realistic=False)
    (sdir / "metadata.json").write_text("{}\n")
    # mostly holes (zeros) with a random 4 KiB block per MiB: quick to back
    # up, and every 1 MiB frame still has to be decompressed for real
    rng = random.Random(5)
    with open(sdir / "big.bin", "wb") as f:
        f.truncate(size)
        for off in range(0, size, 1 << 20):
            f.seek(off + rng.randrange(1 << 19))
            f.write(rng.randbytes(4096))
    res = fl.backup("full", sid="BIG")
    man = fl.manifest("BIG", res["id"])
    entry = next(e for e in man["entries"] if e["path"] == "big.bin")
    assert entry["size"] == size
    manifest_bytes = (fl.store / "BIG" / res["id"] / "manifest.json").stat().st_size

    cache_mib = 16
    m = mounts(fl.store, options=["-o", f"cache_size={cache_mib}"])
    before = vm_hwm_bytes(m.pid)
    r = run("sha256sum", m.path("BIG", res["id"], "big.bin"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == entry["sha256"]
    peak = vm_hwm_bytes(m.pid)
    # the frame cache, the manifests, and a fixed margin for the daemon
    # itself, libfuse's worker threads and frames being decompressed
    margin = 32 << 20
    limit = (cache_mib << 20) + manifest_bytes + margin
    print(f"VmHWM before {before >> 10} KiB, after reading 256 MiB {peak >> 10} KiB, "
          f"limit {limit >> 10} KiB")
    assert peak <= limit


def minor_faults(pid):
    """Minor page faults of the whole process so far (/proc/PID/stat)."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[7])


def faults_with_and_without_warm_heap(fl, mounts, monkeypatch, read):
    """(warm, cold): the page faults read(mount) counts in a fresh mount of
    fl.store, with the heap the daemon writes at start (fs/main.c,
    set_up_malloc) and without it (MALLOC_TRIM_THRESHOLD_ set: malloc left to
    the C library). A first mount comes before both, so that both load the
    backup's contents the same way (from the manifest cache if it fills)."""
    def faults(name):
        m = mounts(fl.store, name=name)
        n = read(m)
        m.stop()
        return n

    faults("prime")
    warm = faults("warm")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(128 * 1024))
    return warm, faults("cold")


def test_sequential_read_decodes_into_heap_already_in_memory(fl, mounts, fbfs_bin, monkeypatch):
    """A sequential read of a file of many 1 MiB frames decodes each frame,
    and the frames ahead, into buffers that are recycled only a few frames
    behind: ~12 MiB of them, which the daemon takes from the heap it wrote at
    start (fs/main.c, set_up_malloc) instead of fresh pages. Without that
    (MALLOC_TRIM_THRESHOLD_ set) a 24 MiB file faults in over a thousand."""
    exe = pathlib.Path(fbfs_bin).read_bytes()
    if b"__asan_init" in exe or b"__tsan_init" in exe:
        pytest.skip("the sanitizers bring their own malloc, which mallopt does not set up")
    (fl.flowloom / "backup.json").write_text(json.dumps(
        {"compression": {"level": 3, "frame_size": 1 << 20, "threads": 1}}))
    sdir = fl.session("SEQ", realistic=False)
    (sdir / "metadata.json").write_text("{}\n")
    data = random.Random(11).randbytes(24 << 20)
    (sdir / "big.bin").write_bytes(data)
    bid = fl.backup("full", sid="SEQ")["id"]

    def read(m):
        path = pathlib.Path(m.path("SEQ", bid, "big.bin"))
        os.listdir(path.parent)
        before = minor_faults(m.pid)
        assert path.read_bytes() == data
        return minor_faults(m.pid) - before

    warm, cold = faults_with_and_without_warm_heap(fl, mounts, monkeypatch, read)
    print(f"minor faults reading 24 MiB: {warm} with the heap written at start, {cold} without")
    assert cold > 1000, cold
    assert warm * 10 < cold, (warm, cold)


def test_first_read_finds_the_daemon_heap_already_in_memory(fl, mounts, fbfs_bin, monkeypatch):
    """The daemon writes its first 12 MiB of heap once at start (fs/main.c,
    set_up_malloc): the first read of a small file in a fresh mount of a
    2,000-file backup then meets few new pages. Without it (the daemon
    leaves malloc alone when MALLOC_TRIM_THRESHOLD_ is set) the manifest
    cache entry, the entries and the tree fault in ~130 pages."""
    exe = pathlib.Path(fbfs_bin).read_bytes()
    if b"__asan_init" in exe or b"__tsan_init" in exe:
        pytest.skip("the sanitizers bring their own malloc, which mallopt does not set up")
    sdir = fl.session("MANY", realistic=False)
    (sdir / "metadata.json").write_text("{}\n")
    for d in range(20):
        sub = sdir / "steps" / f"s{d:02}"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"step-{i:03}.json").write_text(json.dumps({"step": d * 100 + i}) + "\n")
    bid = fl.backup("full", sid="MANY")["id"]
    rel = ("steps", "s10", "step-042.json")
    want = json.dumps({"step": 1042}) + "\n"

    def read(m):
        before = minor_faults(m.pid)
        assert pathlib.Path(m.path("MANY", bid, *rel)).read_text() == want
        return minor_faults(m.pid) - before

    warm, cold = faults_with_and_without_warm_heap(fl, mounts, monkeypatch, read)
    print(f"minor faults of the first read: {warm} with the heap written at start, "
          f"{cold} without")
    assert warm * 2 < cold, (warm, cold)
