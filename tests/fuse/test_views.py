"""flowloom-backupfs's views (issue 12): <session>/as-of/<backup_id>/ (the
session as it stood at a backup) and <session>/history/<path>/ (every
version of every file), on real mounts, checked with diff, stat, json and
the daemon's peak memory. Every mount is torn down by the `mounts` fixture
(fusermount3 -u, -uz, then the daemon's own PID)."""
import errno
import json
import os
import pathlib
import stat
import subprocess
import time

import pytest

from fusehelpers import FRAME_SIZE, T0, age_dirs, frames_of, read_seek_table
from fbhelpers import tree_snapshot


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def poll(cond, timeout=1.5, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def change_state(sdir, step):
    """Changes only what an incremental holds by default (top-level *.json
    and state/), so that the as-of tree of the incremental is the session
    as it stood."""
    (sdir / "state.json").write_text(json.dumps({"step": step, "status": "running"}) + "\n")
    (sdir / "state" / "plan.json").write_text(json.dumps({"todo": ["b"], "done": ["a"] * step}))
    (sdir / "state" / f"new-{step}.json").write_text(json.dumps({"n": step}))
    # only state/ changed: the other directories keep the full's times
    t = 1_700_000_000_000_000_000 + step * 100_000_000_007
    os.utime(sdir / "state", ns=(t, t))


class Views:
    """A session S1 with full F, incrementals I1, I2 (state changed before
    each), and a copy of the session as each backup saw it."""

    def __init__(self, fl, tmp):
        self.fl = fl
        self.tmp = tmp
        # small frames, so that damage can be aimed at one file's frame
        (fl.flowloom / "backup.json").write_text(json.dumps(
            {"compression": {"level": 3, "frame_size": FRAME_SIZE, "threads": 1}}))
        self.sdir = fl.session("S1")
        age_dirs(self.sdir)
        self.now = T0
        self.ids = []
        self.snaps = {}
        self.states = {}
        self.take("full")
        for step in (1, 2):
            change_state(self.sdir, step)
            self.take("incremental")

    def take(self, kind):
        self.now += 60
        bid = self.fl.backup(kind, sid="S1", now=self.now)["id"]
        self.ids.append(bid)
        dst = self.tmp / "snap" / bid
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(self.sdir), str(dst)], check=True)
        self.snaps[bid] = dst
        self.states[bid] = json.loads((self.sdir / "state.json").read_text())
        return bid

    @property
    def store(self):
        return self.fl.store


@pytest.fixture
def views(fl, tmp_path):
    return Views(fl, tmp_path)


def same_tree(a, b):
    sa, sb = tree_snapshot(a), tree_snapshot(b)
    assert sa == sb, {k: (sa.get(k), sb.get(k)) for k in set(sa) | set(sb)
                      if sa.get(k) != sb.get(k)}
    r = run("diff", "-r", "--no-dereference", a, b)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


# ---------------------------------------------------------------- as-of/

def test_asof_is_the_session_as_it_stood(views, mounts):
    m = mounts(views.store)
    f, i1, i2 = views.ids
    assert sorted(os.listdir(m.path("S1"))) == sorted(views.ids + [
        "latest", "latest-full", "as-of", "history"])
    assert os.listdir(m.path("S1", "as-of")) == [f, i1, i2, "latest"]
    assert os.readlink(m.path("S1", "as-of", "latest")) == i2
    for bid in views.ids:
        same_tree(m.path("S1", "as-of", bid), views.snaps[bid])
    # an incremental's own directory holds only what it took
    assert "artifacts" not in os.listdir(m.path("S1", i1))
    assert "artifacts" in os.listdir(m.path("S1", "as-of", i1))
    # hardlinks share one inode and count their links, as in a backup dir
    a = os.lstat(m.path("S1", "as-of", i2, "artifacts", "blob.dat"))
    b = os.lstat(m.path("S1", "as-of", i2, "artifacts", "blob-hardlink.dat"))
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    # the view's directory: the backup's creation time
    st = os.stat(m.path("S1", "as-of", i1))
    assert stat.S_ISDIR(st.st_mode)
    assert st.st_mtime == os.stat(m.path("S1", i1)).st_mtime


def test_asof_attributes_and_inodes(views, mounts):
    m = mounts(views.store)
    i1 = views.ids[1]
    top = m.path("S1", "as-of", i1)
    seen = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            a, b = os.lstat(p), os.lstat(p)
            assert a.st_ino == b.st_ino, p
            rel = os.path.relpath(p, top)
            src = os.lstat(os.path.join(views.snaps[i1], rel))
            assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(src.st_mode), rel
            assert stat.S_IMODE(a.st_mode) == stat.S_IMODE(src.st_mode), rel
            if not stat.S_ISDIR(a.st_mode):
                assert a.st_mtime_ns == src.st_mtime_ns, rel
            if stat.S_ISREG(a.st_mode):
                assert a.st_size == src.st_size, rel
            seen.setdefault(a.st_ino, set()).add(rel)
    # distinct inodes for distinct files; only the hardlink pair shares one
    shared = [v for v in seen.values() if len(v) > 1]
    assert shared == [{"artifacts/blob.dat", "artifacts/blob-hardlink.dat"}], shared
    # a second stat after the kernel's caches are dropped: same numbers
    before = {rel: os.lstat(os.path.join(top, rel)).st_ino
              for rels in seen.values() for rel in rels}
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("2\n")
    after = {rel: os.lstat(os.path.join(top, rel)).st_ino for rel in before}
    assert before == after


def erofs_checks(d, f):
    """Every write attempt in directory d (holding file f) fails with EROFS."""
    for fn in (lambda: open(os.path.join(d, "new.txt"), "w"),
               lambda: open(f, "r+b"),
               lambda: os.unlink(f),
               lambda: os.mkdir(os.path.join(d, "sub")),
               lambda: os.rename(f, os.path.join(d, "moved")),
               lambda: os.chmod(f, 0o600),
               lambda: os.symlink("x", os.path.join(d, "ln"))):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EROFS, e.value


def test_views_are_read_only(views, mounts):
    m = mounts(views.store)
    i2 = views.ids[2]
    erofs_checks(m.path("S1", "as-of", i2), m.path("S1", "as-of", i2, "state.json"))
    v = os.listdir(m.path("S1", "history", "state.json"))[0]
    erofs_checks(m.path("S1", "history", "state.json"),
                 m.path("S1", "history", "state.json", v))
    for d in (m.path("S1", "as-of"), m.path("S1", "history")):
        with pytest.raises(OSError) as e:
            os.mkdir(os.path.join(d, "x"))
        assert e.value.errno == errno.EROFS


def test_new_backup_shows_in_views_within_a_second(views, mounts):
    m = mounts(views.store)
    f, i1, i2 = views.ids
    hist = m.path("S1", "history", "state.json")
    assert sorted(os.listdir(hist)) == sorted([f + ".json", i1 + ".json", i2 + ".json",
                                               "latest"])
    ino_i1 = os.stat(m.path("S1", "as-of", i1, "state.json")).st_ino
    change_state(views.sdir, 3)
    i3 = views.take("incremental")
    assert poll(lambda: i3 in os.listdir(m.path("S1", "as-of")))
    assert poll(lambda: os.readlink(m.path("S1", "as-of", "latest")) == i3)
    assert poll(lambda: i3 + ".json" in os.listdir(hist))
    assert poll(lambda: os.readlink(os.path.join(hist, "latest")) == i3 + ".json")
    same_tree(m.path("S1", "as-of", i3), views.snaps[i3])
    with open(os.path.join(hist, "latest")) as fh:
        assert json.load(fh) == views.states[i3]
    # an older backup's as-of tree is unchanged, numbers included
    assert os.stat(m.path("S1", "as-of", i1, "state.json")).st_ino == ino_i1


def remove_by_hand(store, sid, bid):
    """Removes one backup as cleanup would: the index first, then the dir."""
    import shutil
    sdir = store / sid
    idx = json.loads((sdir / "index.json").read_bytes())
    idx["backups"] = [b for b in idx["backups"] if b["id"] != bid]
    tmp = sdir / ".tmp-index-test"
    tmp.write_text(json.dumps(idx, indent=2) + "\n")
    os.rename(tmp, sdir / "index.json")
    trash = sdir / (".trash-" + bid)
    os.rename(sdir / bid, trash)
    shutil.rmtree(trash)


def test_removed_base_leaves_the_incrementals_alone(views, mounts):
    m = mounts(views.store)
    f, i1, i2 = views.ids
    assert "artifacts" in os.listdir(m.path("S1", "as-of", i2))
    remove_by_hand(views.store, "S1", f)
    assert poll(lambda: "artifacts" not in os.listdir(m.path("S1", "as-of", i2)))
    assert f not in os.listdir(m.path("S1", "as-of"))
    # what is left is the two incrementals laid over each other
    want = set()
    for bid in (i1, i2):
        for e in views.fl.manifest("S1", bid)["entries"]:
            want.add(e["path"])
    r = run("find", m.path("S1", "as-of", i2), "-mindepth", "1", "-printf", "%P\\n")
    assert set(r.stdout.splitlines()) == want
    for p in want:
        src = views.snaps[i2] / p
        if src.is_file() and not src.is_symlink():
            assert (m.path("S1", "as-of", i2) / p).read_bytes() == src.read_bytes(), p
    # history/ no longer shows the removed backup's versions
    assert poll(lambda: f + ".json" not in os.listdir(m.path("S1", "history", "state.json")))


def test_damage_gives_eio_in_views(views, mounts):
    """A flipped byte in the full's archive: EIO for that file in as-of/
    and history/, never wrong bytes; a damaged manifest: EIO for the trees
    made from it."""
    f, i1, i2 = views.ids
    man = views.fl.manifest("S1", f)
    archive = views.fl.archive("S1", f)
    frames = read_seek_table(archive)
    victim = next(e for e in man["entries"] if e["path"] == "artifacts/models/weights.bin")
    hit = frames_of(frames, victim["offset"], victim["size"])
    inner = sorted(i for i in hit if frames[i][2] >= victim["offset"]
                   and frames[i][2] + frames[i][3] <= victim["offset"] + victim["size"])
    c_off, c_size, _, _ = frames[inner[len(inner) // 2]]
    with open(archive, "r+b") as fh:
        fh.seek(c_off + c_size // 2)
        b = fh.read(1)
        fh.seek(c_off + c_size // 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    m = mounts(views.store)
    for p in (m.path("S1", "as-of", i2, victim["path"]),
              m.path("S1", "history", victim["path"], f + ".bin")):
        with pytest.raises(OSError) as e:
            with open(p, "rb") as fh:
                fh.read()
        assert e.value.errno == errno.EIO, p
    assert (m.path("S1", "as-of", i2, "state.json").read_bytes()
            == (views.snaps[i2] / "state.json").read_bytes())
    mpath = views.store / "S1" / i1 / "manifest.json"
    mpath.write_bytes(mpath.read_bytes()[:-40])
    with pytest.raises(OSError) as e:  # not loaded yet: made from that manifest
        os.listdir(m.path("S1", "as-of", i1))
    assert e.value.errno == errno.EIO
    # a full's tree does not need that manifest
    assert "state.json" in os.listdir(m.path("S1", "as-of", f))
    assert m.proc.poll() is None


# -------------------------------------------------------------- history/

def test_history_versions(views, mounts):
    m = mounts(views.store)
    f, i1, i2 = views.ids
    h = m.path("S1", "history")
    assert {"state.json", "state", "metadata.json", "artifacts", "logs"} <= set(os.listdir(h))
    # one version per change, named with the path's extension
    assert os.listdir(h / "state.json") == [f + ".json", i1 + ".json", i2 + ".json", "latest"]
    # metadata.json is in every backup, unchanged: one version
    assert os.listdir(h / "metadata.json") == [f + ".json", "latest"]
    # no extension, and a leading dot is none
    assert os.listdir(h / "state" / "notes.md") == [f + ".md", "latest"]
    assert os.listdir(h / "artifacts" / "blob-hardlink.dat") == [f + ".dat", "latest"]
    assert os.listdir(h / "state" / "new-2.json") == [i2 + ".json", "latest"]
    assert os.readlink(h / "state.json" / "latest") == i2 + ".json"
    for bid in views.ids:
        p = h / "state.json" / (bid + ".json")
        with open(p) as fh:
            assert json.load(fh) == views.states[bid]
        src = os.lstat(views.snaps[bid] / "state.json")
        st = os.lstat(p)
        assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(src.st_mode)
        assert st.st_mtime_ns == src.st_mtime_ns and st.st_size == src.st_size
    r = run("diff", h / "state.json" / (f + ".json"), h / "state.json" / (i1 + ".json"))
    assert r.returncode == 1 and '"step": 1' in r.stdout, r.stdout + r.stderr
    with open(h / "state.json" / "latest") as fh:
        assert json.load(fh) == views.states[i2]
    # a symlink's versions are symlinks with the stored target
    assert os.readlink(h / "artifacts" / "latest-weights" / f) == "models/weights.bin"
    # a hardlink's version has its file's bytes
    assert ((h / "artifacts" / "blob-hardlink.dat" / (f + ".dat")).read_bytes()
            == (views.snaps[f] / "artifacts" / "blob.dat").read_bytes())
    big = h / "artifacts" / "models" / "weights.bin" / (f + ".bin")
    assert big.read_bytes() == (views.snaps[f] / "artifacts/models/weights.bin").read_bytes()
    r = run("ls", "-R", h)
    assert r.returncode == 0, r.stderr


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_history_memory_stays_bounded(fl, mounts, fbfs_bin):
    """Many backups of a session of 400 small JSON files under state/ (all
    in every incremental), a few changed between backups: walking and
    reading history/ keeps the daemon under 64 MiB with meta_cache_size=16."""
    if b"__asan_init" in pathlib.Path(fbfs_bin).read_bytes():
        pytest.skip("peak RSS means nothing under AddressSanitizer (shadow memory, quarantine)")
    sdir = fl.sessions / "S1"
    (sdir / "state").mkdir(parents=True)
    for i in range(400):
        (sdir / "state" / f"f{i:03d}.json").write_text(json.dumps({"i": i, "v": 0}))
    (sdir / "state.json").write_text(json.dumps({"step": 0}))
    now = T0
    n_backups = 40
    for k in range(n_backups):
        for j in range(3):
            i = (k * 7 + j * 131) % 400
            (sdir / "state" / f"f{i:03d}.json").write_text(json.dumps({"i": i, "v": k}))
        (sdir / "state.json").write_text(json.dumps({"step": k}))
        now += 60
        fl.backup("full" if k % 10 == 0 else "incremental", sid="S1", now=now)
    m = mounts(fl.store, options=["-o", "meta_cache_size=16"])
    h = m.path("S1", "history")
    files = 0
    for dirpath, dirs, names in os.walk(h):
        for name in names:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                with open(p, "rb") as fh:
                    json.loads(fh.read())
                files += 1
    assert files >= 400 + n_backups
    assert len(os.listdir(h / "state.json")) == n_backups + 1
    for bid in os.listdir(m.path("S1", "as-of")):
        os.listdir(m.path("S1", "as-of", bid, "state"))
    hwm = vm_hwm_kib(m.pid)
    assert hwm < 64 * 1024, f"daemon VmHWM {hwm} KiB"
