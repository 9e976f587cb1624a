"""The mount's metadata budget on a real mount (issue 10): with
`-o meta_cache_size=1` the backups' metadata does not all fit, so walking
several backups evicts the least recently used ones and reloads them when a
path inside them is used again; every byte read must still be the source's,
inode numbers must not change, and the daemon must stay up. The eviction
counters themselves are checked by tests/unit/test_mount_tree.c."""
import os
import random
import subprocess

from fusehelpers import Store, age_dirs

FILES = 3000
BACKUPS = 4


def make_session(sdir, rng, n):
    """n small JSON files in n/100 directories, as an agent writes them."""
    for i in range(n):
        d = sdir / f"d{i % max(1, n // 100):03d}"
        d.mkdir(exist_ok=True)
        body = '{"i": %d, "v": "%s"}\n' % (i, "x" * rng.randrange(20, 200))
        (d / f"f{i:06d}.json").write_text(body)


def change_session(sdir, rng, round_, n):
    """Rewrites a tenth of the files and adds a few, so backups differ."""
    for i in rng.sample(range(n), n // 10):
        p = sdir / f"d{i % max(1, n // 100):03d}" / f"f{i:06d}.json"
        p.write_text('{"i": %d, "round": %d}\n' % (i, round_))
    extra = sdir / f"new{round_}"
    extra.mkdir()
    for j in range(20):
        (extra / f"n{j}.txt").write_text(f"round {round_} file {j}\n" * (j + 1))


def source_files(root):
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def check_backup(m, snap, sid, bid, inos):
    """Every file of the backup reads as its source; inode numbers are the
    ones seen before, if any."""
    rels = source_files(snap)
    assert sorted(source_files(m.path(sid, bid))) == rels
    for rel in rels:
        p = m.path(sid, bid, rel)
        with open(p, "rb") as f:
            got = f.read()
        assert got == (snap / rel).read_bytes(), rel
        ino = os.stat(p).st_ino
        assert inos.setdefault((bid, rel), ino) == ino, rel


def test_walk_backups_under_a_tiny_budget(fl, tmp_path, mounts):
    rng = random.Random(10)
    st = Store(fl, tmp_path)
    sdir = fl.session("BIG", realistic=False)
    make_session(sdir, rng, FILES)
    age_dirs(sdir)
    ids = []
    for r in range(BACKUPS):
        if r:
            change_session(sdir, rng, r, FILES)
        ids.append(st.backup("BIG", "full"))
    entries = sum(len(fl.manifest("BIG", b)["entries"]) for b in ids)
    # a loaded entry takes well over 100 bytes (record, path, tree node):
    # together the backups do not fit in the 1 MiB bound
    assert entries * 100 > 1 << 20, entries

    m = mounts(fl.store, options=["-o", "meta_cache_size=1"])
    inos = {}
    # forward, then back: the second pass reloads what the first evicted
    for bid in ids + ids[::-1]:
        check_backup(m, st.snapshots[("BIG", bid)], "BIG", bid, inos)
        assert m.proc.poll() is None, m.log.read_text(errors="replace")
    # paths of a backup evicted long ago still resolve, to the same inodes
    first = st.snapshots[("BIG", ids[0])]
    rel = source_files(first)[0]
    assert os.stat(m.path("BIG", ids[0], rel)).st_ino == inos[(ids[0], rel)]
    assert m.proc.poll() is None


def test_meta_cache_size_option(fl, fbfs_bin, tmp_path, mounts):
    r = subprocess.run([str(fbfs_bin), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "meta_cache_size=MiB" in r.stdout
    st = Store(fl, tmp_path)
    sdir = fl.session("S", realistic=False)
    make_session(sdir, random.Random(1), 50)
    bid = st.backup("S", "full")
    (tmp_path / "m").mkdir()
    r = subprocess.run([str(fbfs_bin), "-f", "-o", "meta_cache_size=lots", str(fl.store),
                        str(tmp_path / "m")], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    # 0: no bound
    m = mounts(fl.store, options=["-o", "meta_cache_size=0"])
    snap = st.snapshots[("S", bid)]
    check_backup(m, snap, "S", bid, {})
