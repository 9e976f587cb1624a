"""F23-F26: a damaged store. Bit flips in an archive and in a manifest
(scripts/flip-byte), a truncated archive, an empty or missing manifest, a
backup directory deleted by hand, a missing or unparseable index. `verify`
exits 1 naming exactly the damaged backup (or the index), the other backups
still verify, and verify changes no backup; the invariants hold with the
damaged backup excluded."""
import json
import os
import random
import re
import shutil
import subprocess

import pytest

from fbhelpers import tree_snapshot
from relhelpers import (FLIP_BYTE, assert_invariants, clone, listed, small_session,
                        write_config)


@pytest.fixture
def three(fl):
    """S: full B0, incremental B1 (base B0), full B2."""
    write_config(fl)
    sdir = small_session(fl)
    b0 = fl.backup("full", sid="S")["id"]
    (sdir / "state.json").write_text('{"step": 20}\n')
    b1 = fl.backup("incremental", sid="S")["id"]
    (sdir / "logs" / "run.log").write_text("changed\n")
    b2 = fl.backup("full", sid="S")["id"]
    return fl, [b0, b1, b2]


def flip(path, offset):
    subprocess.run([str(FLIP_BYTE), str(path), str(offset)], check=True)


def recover_refuses(fl, ids, bad, tmp_path, context):
    """F23: restoring the damaged backup, or an incremental of it, fails and
    writes nothing (not even a half tree or a staging dir beside the target);
    a good one restores."""
    parent = tmp_path / "restore-parent"
    shutil.rmtree(parent, ignore_errors=True)
    parent.mkdir()
    target = parent / "T"
    # the damaged backup, and an incremental restored with it as its base
    dependents = [b["id"] for b in fl.index("S")["backups"] if b["base"] == bad]
    for bid in [bad] + dependents:
        r = fl.run("recover", "--session", "S", bid, "--target", str(target))
        assert r.rc == 1, f"{context}: recover {bid}: {r!r}"
        assert os.listdir(parent) == [], f"{context}: recover left {os.listdir(parent)}"
    # a full backup: an incremental is restored with its base, which may be
    # the damaged one
    good = next(i for i in ids if i != bad and "-full-" in i)
    r = fl.run("recover", "--session", "S", good, "--target", str(target), "-q")
    assert r.rc == 0, f"{context}: {r!r}"


def verify_names_only(fl, ids, bad, context):
    """verify: exit 1, one CORRUPT line for bad, OK for every other backup,
    and no backup directory changed."""
    before = tree_snapshot(fl.store)
    r = fl.run("verify", "--session", "S")
    assert r.rc == 1, f"{context}: {r!r}"
    corrupt = [ln for ln in r.out.splitlines() if ln.startswith("CORRUPT ")]
    assert [ln.split(":")[0] for ln in corrupt] == [f"CORRUPT {bad}"], f"{context}: {r!r}"
    for other in ids:
        if other != bad:
            assert f"OK {other}" in r.out.splitlines(), f"{context}: {r!r}"
            assert fl.run("verify", "--session", "S", other).rc == 0, context
    assert fl.run("verify", "--session", "S", bad).rc == 1, context
    assert tree_snapshot(fl.store) == before, f"{context}: verify modified the store"
    assert_invariants(fl, corrupt=[bad], context=context)
    return corrupt[0]


@pytest.mark.parametrize("which", [0, 1])
def test_f23_archive_bit_flips_at_random_offsets(three, tmp_path, which):
    fl, ids = three
    bad = ids[which]
    size = fl.archive("S", bad).stat().st_size
    rng = random.Random(2300 + which)
    for offset in sorted(rng.sample(range(size), 10)):
        work = clone(fl, tmp_path / "work")
        flip(work.archive("S", bad), offset)
        context = f"{bad}: byte {offset} of {size} flipped"
        verify_names_only(work, ids, bad, context)
        recover_refuses(work, ids, bad, tmp_path, context)


def test_f23_ten_flips_at_once_and_a_truncated_archive(three):
    fl, ids = three
    arch = fl.archive("S", ids[2])
    size = arch.stat().st_size
    for offset in random.Random(2310).sample(range(size), 10):
        flip(arch, offset)
    verify_names_only(fl, ids, ids[2], "10 flips")
    arch0 = fl.archive("S", ids[0])
    os.truncate(arch0, arch0.stat().st_size // 2)
    r = fl.run("verify", "--session", "S")
    assert r.rc == 1
    assert sorted(re.findall(r"^CORRUPT (\S+):", r.out, re.M)) == sorted([ids[0], ids[2]]), r
    assert f"OK {ids[1]}" in r.out


def manifest_targets(text):
    """Byte offsets of manifest fields whose one-bit flip must be caught:
    each (name, offset), in any layout (compact, or indented as older versions
    wrote it). Informational fields (tool_version, archive.level,
    note) are left out: nothing on disk can contradict them."""
    def at(pattern, nth=0):
        found = list(re.finditer(pattern, text))
        assert len(found) > nth, pattern
        return found[nth].start(1)
    return [
        ("opening brace", 0),
        ("archive.sha256", at(r'"archive":\s*\{[^}]*"sha256":\s*"([0-9a-f])')),
        ("archive.size", at(r'"archive":\s*\{\s*"size":\s*\d*(\d),')),
        ("archive.frames", at(r'"frames":\s*\d*(\d)')),
        ("a file sha256", at(r'"type":\s*"file",[^}]*"sha256":\s*"[0-9a-f]{63}([0-9a-f])"')),
        ("a file size", at(r'"type":\s*"file",[^}]*"size":\s*[1-9]\d*(\d),')),
        ("a file offset", at(r'"offset":\s*\d*(\d)', 1)),
        ("a path", at(r'"path":\s*"[^"]*([a-z])"')),
        ("a mode", at(r'"mode":\s*\d*(\d)')),
        ("an mtime", at(r'"mtime":\s*\d*(\d)')),
        ("an mtime_nsec", at(r'"mtime_nsec":\s*\d*([0-8])')),
        ("a uid", at(r'"uid":\s*\d*(\d)')),
        ("a symlink target", at(r'"target":\s*"[^"]*([a-z])"')),
        ("seq", at(r'"seq":\s*\d*(\d)')),
        ("created_at", at(r'"created_at":\s*"\d{4}-\d\d-\d\dT\d\d:\d\d:\d(\d)')),
        ("totals.bytes", at(r'"bytes":\s*\d*(\d)')),
        ("type", at(r'"type":\s*"(f)ull"')),
        ("session_id", at(r'"session_id":\s*"(S)"')),
    ]


def test_f23_manifest_bit_flips(three, tmp_path):
    fl, ids = three
    bad = ids[0]
    text = (fl.store / "S" / bad / "manifest.json").read_text()
    for name, offset in manifest_targets(text):
        work = clone(fl, tmp_path / "work")
        flip(work.store / "S" / bad / "manifest.json", offset)
        context = f"manifest flip in {name} at byte {offset}"
        verify_names_only(work, ids, bad, context)
        if name not in ("created_at", "seq"):
            # (those two only disagree with the index; the data is intact)
            recover_refuses(work, ids, bad, tmp_path, context)


@pytest.mark.parametrize("damage", ["empty manifest", "missing manifest", "missing archive",
                                    "manifest of another backup"])
def test_f24_empty_or_missing_files(three, damage):
    fl, ids = three
    bad = ids[1]
    d = fl.store / "S" / bad
    if damage == "empty manifest":
        (d / "manifest.json").write_bytes(b"")
    elif damage == "missing manifest":
        (d / "manifest.json").unlink()
    elif damage == "missing archive":
        (d / "archive.tar.zst").unlink()
    else:
        shutil.copy(fl.store / "S" / ids[0] / "manifest.json", d / "manifest.json")
    verify_names_only(fl, ids, bad, damage)


def test_f25_backup_dir_deleted_by_hand(three):
    """The full base of the incremental goes: verify reports it once, the
    index is rebuilt without it, and the incremental, being self-contained,
    still verifies and extracts."""
    fl, ids = three
    keep = tree_snapshot(fl.store / "S" / ids[1])
    shutil.rmtree(fl.store / "S" / ids[0])
    r = fl.run("verify", "--session", "S")
    assert r.rc == 1, r
    assert re.findall(r"^CORRUPT (\S+):", r.out, re.M) == [ids[0]], r
    assert "index rebuilt" in r.err and ids[0] in r.err, r
    assert f"OK {ids[1]}" in r.out and f"OK {ids[2]}" in r.out
    r = fl.run("verify", "--session", "S")
    assert r.rc == 0 and r.err == "", r
    assert listed(fl) == ids[1:]
    assert [b["id"] for b in json.loads((fl.store / "S" / "index.json").read_bytes())
            ["backups"]] == ids[1:]
    assert tree_snapshot(fl.store / "S" / ids[1]) == keep
    assert_invariants(fl, extract=True)


@pytest.mark.parametrize("damage", ["missing", "open brace", "not an object", "symlink"])
def test_f26_index_missing_or_unparseable(three, tmp_path, damage):
    fl, ids = three
    index = fl.store / "S" / "index.json"
    good = index.read_bytes()
    backups = {i: tree_snapshot(fl.store / "S" / i) for i in ids}
    if damage == "missing":
        index.unlink()
    elif damage == "open brace":
        index.write_bytes(b"{")
    elif damage == "not an object":
        index.write_bytes(b"[]")
    else:
        outside = tmp_path / "elsewhere.json"
        outside.write_bytes(good)
        index.unlink()
        os.symlink(outside, index)
    r = fl.run("verify", "--session", "S")
    assert r.rc == 1, r
    assert re.findall(r"^CORRUPT (\S+):", r.out, re.M) == ["S/index.json"], r
    assert "index rebuilt" in r.err, r
    for i in ids:
        assert f"OK {i}" in r.out.splitlines()
    # the index is derived data: rebuilt from the manifests, byte for byte
    assert index.read_bytes() == good and not index.is_symlink()
    assert {i: tree_snapshot(fl.store / "S" / i) for i in ids} == backups
    if damage == "symlink":
        assert (tmp_path / "elsewhere.json").read_bytes() == good
    assert fl.run("verify", "--session", "S").rc == 0
    assert_invariants(fl)
