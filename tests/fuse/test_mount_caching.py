"""What the mount lets the kernel cache: everything inside a backup for a
year (entries, attributes, pages with keep_cache), the root and session
listings for about a second. Long lifetimes must never serve stale answers:
attributes and bytes stay those of the manifest across repeated walks, a
new backup still shows within the refresh budget, and a backup id that comes
back naming other contents gets new inode numbers."""
import hashlib
import json
import os
import shutil
import time

from fusehelpers import is_mounted


def poll(cond, timeout=1.5, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def check_backup(m, sid, bid, man):
    """Every file's size, mtime and sha256 as the manifest says; inode numbers."""
    inos = {}
    for e in man["entries"]:
        if e["type"] != "file":
            continue
        p = m.path(sid, bid, e["path"])
        st = os.stat(p)
        assert st.st_size == e["size"], e["path"]
        assert st.st_mtime_ns == e["mtime"] * 10**9 + e["mtime_nsec"], e["path"]
        with open(p, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == e["sha256"], e["path"]
        inos[e["path"]] = st.st_ino
    return inos


def test_cached_walks_stay_right_and_new_backups_still_show(populated, mounts):
    m = mounts(populated.store)
    sid = "S1"
    bid = populated.ids(sid, "full")[0]
    man = populated.manifest(sid, bid)
    first = check_backup(m, sid, bid, man)
    assert first
    # The second walk is answered from the kernel's caches where it can be.
    assert check_backup(m, sid, bid, man) == first
    # The session listing is short-lived: a new backup shows within the budget
    # the other liveness tests use, by listing and by path, while the cached
    # backup keeps its numbers and bytes.
    new = populated.backup(sid, "full")
    assert poll(lambda: new in os.listdir(m.path(sid))), os.listdir(m.path(sid))
    assert poll(lambda: os.path.isfile(m.path(sid, new, "state.json")))
    assert poll(lambda: os.readlink(m.path(sid, "latest")) == new)
    check_backup(m, sid, new, populated.manifest(sid, new))
    assert check_backup(m, sid, bid, man) == first
    assert m.proc.poll() is None and is_mounted(m.mnt)


def test_backup_id_back_with_other_contents_gets_new_inodes(populated, mounts):
    """A backup removed, then its id back with another archive (a store
    restored from elsewhere, a hand-made copy): the kernel still caches the
    old entries for a year, so they must not be answered with the old
    numbers, attributes or pages."""
    m = mounts(populated.store)
    sid = "S1"
    old, other = populated.ids(sid, "full")
    path = m.path(sid, old, "state.json")
    with open(path, "rb") as f:
        old_bytes = f.read()
    old_ino = os.stat(path).st_ino
    old_dir_ino = os.stat(m.path(sid, old)).st_ino
    want = (populated.snapshots[(sid, other)] / "state.json").read_bytes()
    assert want != old_bytes

    sdir = populated.store / sid
    idx = json.loads((sdir / "index.json").read_bytes())
    old_rec = next(b for b in idx["backups"] if b["id"] == old)
    populated.remove(sid, old)
    assert poll(lambda: old not in os.listdir(m.path(sid)))

    # The other full backup's archive under the old id.
    tmp = sdir / (".tmp-" + old)
    shutil.copytree(sdir / other, tmp)
    man = (tmp / "manifest.json").read_text()
    (tmp / "manifest.json").write_text(man.replace(other, old))
    os.rename(tmp, sdir / old)
    idx = json.loads((sdir / "index.json").read_bytes())
    rec = dict(next(b for b in idx["backups"] if b["id"] == other))
    rec.update(id=old, seq=old_rec["seq"])
    idx["backups"] = sorted(idx["backups"] + [rec], key=lambda b: b["seq"])
    (sdir / ".tmp-index-test").write_text(json.dumps(idx, indent=2) + "\n")
    os.rename(sdir / ".tmp-index-test", sdir / "index.json")

    assert poll(lambda: old in os.listdir(m.path(sid)))
    assert poll(lambda: os.stat(m.path(sid, old)).st_ino != old_dir_ino)
    st = os.stat(path)
    assert st.st_ino != old_ino
    assert st.st_size == len(want)
    with open(path, "rb") as f:
        assert f.read() == want
    assert m.proc.poll() is None


def requests(log, opcode, nodeid):
    """How many requests of opcode for nodeid the daemon's -d log shows."""
    want = f"opcode: {opcode} "
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if want in line and f"nodeid: {nodeid}," in line)


def read_state_three_times(populated, m):
    """Opens, reads and closes S1's first full backup's state.json three
    times, checking the bytes each time; returns its inode number."""
    sid = "S1"
    bid = populated.ids(sid, "full")[0]
    e = next(x for x in populated.manifest(sid, bid)["entries"] if x["path"] == "state.json")
    path = m.path(sid, bid, "state.json")
    for _ in range(3):
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == e["sha256"]
    return os.stat(path).st_ino


def test_reopening_a_read_file_costs_no_request(populated, mounts):
    """Where the kernel can skip opens, the daemon lets it: the first open
    is answered ENOSYS, later opens and closes of a cached file send
    nothing, and the bytes are still the manifest's."""
    m = mounts(populated.store, options=["-d"])
    ino = read_state_three_times(populated, m)
    assert requests(m.log, "OPEN", ino) <= 1
    assert requests(m.log, "RELEASE", ino) == 0
    assert requests(m.log, "READ", ino) == 1
    assert m.proc.poll() is None


def test_open_round_trips_option_keeps_every_open(populated, mounts):
    """-o open_round_trips: every open reaches the daemon and proves the
    file there, every close releases it, and the pages stay cached."""
    m = mounts(populated.store, options=["-d", "-o", "open_round_trips"])
    ino = read_state_three_times(populated, m)
    assert requests(m.log, "OPEN", ino) == 3
    assert poll(lambda: requests(m.log, "RELEASE", ino) == 3)
    assert requests(m.log, "READ", ino) == 1
    assert m.proc.poll() is None
