"""The mount's local manifest cache (-o manifest_cache=DIR, docs/mount.md
"The manifest cache") through real mounts: a later mount answers from it
(seen through an entry renamed by hand: the listing shows the new name), a
forged name never gets bytes the archive does not hold under it, damaged
entries are replaced, a replaced manifest is not answered from its old
entry, a cache directory others may write is not used, and
-o no_manifest_cache writes nothing."""
import errno
import os
import pathlib
import time

import pytest

from fbhelpers import xxh64
from fusehelpers import is_mounted
from test_mount_caching import check_backup

SETTLE = 2.2  # FB_MANIFEST_CACHE_SETTLE_SECONDS, and a margin


def entries(cache):
    d = cache / "manifests"
    return sorted(p for p in d.iterdir() if p.name.startswith("m-")) if d.exists() else []


def entry_of(cache, manifest):
    st = os.stat(manifest)
    return cache / "manifests" / f"m-{st.st_dev:016x}-{st.st_ino:016x}"


def reseal(data):
    """The entry with its trailing XXH64 made right again, as a forger would."""
    body = data[:-8]
    return body + xxh64(body).to_bytes(8, "little")


@pytest.fixture
def settled(populated):
    """The populated store, its manifests older than the settle time."""
    time.sleep(SETTLE)
    return populated


def test_later_mount_answers_from_the_cache(settled, mounts, tmp_path):
    cache = tmp_path / "cache"
    sid = "S1"
    bid = settled.ids(sid, "full")[0]
    man = settled.manifest(sid, bid)
    manifest = settled.store / sid / bid / "manifest.json"
    m = mounts(settled.store, options=["-o", f"manifest_cache={cache}"])
    first = check_backup(m, sid, bid, man)
    m.stop()
    entry = entry_of(cache, manifest)
    assert entry in entries(cache)
    assert os.stat(cache / "manifests").st_mode & 0o777 == 0o700
    assert os.stat(entry).st_mode & 0o777 == 0o600

    # Same bytes and metadata from a mount that reads the entry.
    m = mounts(settled.store, options=["-o", f"manifest_cache={cache}"])
    assert check_backup(m, sid, bid, man).keys() == first.keys()
    m.stop()

    # A name changed in the entry (resealed) is what a later mount lists,
    # so the entry is what it reads; the archive holds no such member, so
    # the renamed file is refused, never served.
    data = entry.read_bytes()
    assert data.count(b"state.json") == 1
    entry.write_bytes(reseal(data.replace(b"state.json", b"stAte.json")))
    m = mounts(settled.store, options=["-o", f"manifest_cache={cache}"])
    names = os.listdir(m.path(sid, bid))
    assert "stAte.json" in names and "state.json" not in names
    with pytest.raises(OSError) as e:
        with open(m.path(sid, bid, "stAte.json"), "rb") as f:
            f.read()
    assert e.value.errno == errno.EIO
    m.stop()

    # A byte flipped without resealing: refused, parsed from the JSON, and
    # the entry written again.
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x20
    entry.write_bytes(bytes(data))
    m = mounts(settled.store, options=["-o", f"manifest_cache={cache}"])
    assert "state.json" in os.listdir(m.path(sid, bid))
    check_backup(m, sid, bid, man)
    assert m.proc.poll() is None and is_mounted(m.mnt)
    m.stop()
    assert b"stAte.json" not in entry.read_bytes()
    assert entry.read_bytes() != bytes(data)


def test_replaced_manifest_is_not_answered_from_its_old_entry(settled, mounts, tmp_path):
    cache = tmp_path / "cache"
    sid = "S2"
    bid = settled.ids(sid, "full")[0]
    manifest = settled.store / sid / bid / "manifest.json"
    m = mounts(settled.store, options=["-o", f"manifest_cache={cache}"])
    os.listdir(m.path(sid, bid))
    m.stop()
    old_entry = entry_of(cache, manifest)
    assert old_entry.exists()
    # The same manifest through a new inode (as a copy or a restore of the
    # store makes it): the old entry's key no longer names this file.
    text = manifest.read_bytes()
    tmp = manifest.with_name("manifest.json.new")
    tmp.write_bytes(text)
    os.rename(tmp, manifest)
    assert entry_of(cache, manifest) != old_entry
    # Forge the old entry under the new file's name: its key (inode, ctime)
    # is the old file's, so it is refused.
    entry_of(cache, manifest).write_bytes(old_entry.read_bytes())
    os.unlink(old_entry)
    m = mounts(settled.store, options=["-o", f"manifest_cache={cache}"])
    check_backup(m, sid, bid, settled.manifest(sid, bid))
    m.stop()


def test_cache_others_can_write_is_not_used(settled, mounts, tmp_path):
    cache = tmp_path / "cache"
    (cache / "manifests").mkdir(parents=True)
    os.chmod(cache / "manifests", 0o777)
    sid = "S1"
    bid = settled.ids(sid, "full")[0]
    m = mounts(settled.store, options=["-o", f"manifest_cache={cache}"])
    check_backup(m, sid, bid, settled.manifest(sid, bid))
    m.stop()
    assert entries(cache) == []
    assert "not private" in m.log.read_text(errors="replace")


def test_no_manifest_cache_writes_nothing(settled, mounts, tmp_path):
    sid = "S1"
    bid = settled.ids(sid, "full")[0]
    default = pathlib.Path(os.environ["XDG_CACHE_HOME"]) / "flowloom-backup"
    m = mounts(settled.store, options=["-o", "no_manifest_cache"])
    check_backup(m, sid, bid, settled.manifest(sid, bid))
    m.stop()
    assert not default.exists()
    # Without the option, the default directory ($XDG_CACHE_HOME, set per
    # test by tests/conftest.py) is used.
    m = mounts(settled.store)
    check_backup(m, sid, bid, settled.manifest(sid, bid))
    m.stop()
    assert len(entries(default)) == 1
