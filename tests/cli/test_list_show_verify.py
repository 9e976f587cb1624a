"""`list`, `show` and `verify`: human and JSON output, index rebuilds, and
verification of damaged backups (reported, exit 1, nothing modified)."""
import json
import os
import re

import pytest

from fbhelpers import tree_snapshot

NOW = 1764558900  # 2025-12-01T03:15:00Z


@pytest.fixture
def three(fl1):
    """S1 with full, incremental, full backups."""
    a = fl1.backup("full", "--note", "first", now=NOW)
    b = fl1.backup("incremental", "--note", "second\nline", now=NOW + 60)
    c = fl1.backup("full", now=NOW + 120)
    return fl1, [a["id"], b["id"], c["id"]]


def test_list_human_newest_last_with_local_time(three):
    fl, ids = three
    r = fl.run("list", "S1")
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "CREATED", "FILES", "STORED", "NOTE"]
    assert [ln.split()[0] for ln in lines[1:]] == ids
    m = fl.manifest("S1", ids[0])
    first = lines[1].split()
    assert first[1] == "full" and first[2:4] == ["2025-12-01", "03:15:00"]
    assert first[4] == str(m["totals"]["files"]) and lines[1].endswith("first")
    assert "second\\nline" in lines[2] and lines[2].split()[1] == "incremental"
    assert lines[3].rstrip().endswith("-")  # no note
    # local time follows TZ
    r = fl.run("list", "S1", env={"TZ": "Europe/Paris"})
    assert "2025-12-01 04:15:00" in r.out, r


def test_list_json_matches_the_index(three):
    fl, ids = three
    r = fl.run("list", "S1", "--json")
    assert r.rc == 0, r
    arr = r.json()
    idx = fl.index("S1")["backups"]
    assert [x["id"] for x in arr] == ids
    for got, rec in zip(arr, idx):
        assert got["session_id"] == "S1"
        for key in ("id", "seq", "type", "created_at", "note", "base", "files", "bytes",
                    "stored_bytes", "archive_sha256"):
            assert got[key] == rec[key], key
    assert arr[1]["note"] == "second\nline" and arr[1]["base"] == ids[0]


def test_list_all_sessions_and_empty_session(fl):
    fl.session("A")
    fl.session("B")
    fl.session("C", realistic=False)
    a = fl.backup("full", sid="A", now=NOW)
    b = fl.backup("full", sid="B", now=NOW)
    r = fl.run("list", "--all")
    assert r.rc == 0, r
    assert "Session A: 1 backup" in r.out and "Session B: 1 backup" in r.out
    assert a["id"] in r.out and b["id"] in r.out
    arr = fl.run("list", "--all", "--json").json()
    assert [(x["session_id"], x["id"]) for x in arr] == [("A", a["id"]), ("B", b["id"])]
    r = fl.run("list", "C")
    assert r.rc == 0 and "No backups of session C" in r.out, r
    assert fl.run("list", "C", "--json").json() == []


def test_list_rebuilds_a_missing_or_broken_index_and_says_so(three):
    fl, ids = three
    index = fl.store / "S1" / "index.json"
    good = json.loads(index.read_bytes())
    for damage in (lambda: index.unlink(), lambda: index.write_text("{"),
                   lambda: index.write_text(json.dumps({"format": 1, "session_id": "S1",
                                                        "backups": []}))):
        damage()
        r = fl.run("list", "S1", "-q")
        assert r.rc == 0, r
        assert r.out.split() == ids
        assert "index" in r.err and "rebuilt" in r.err
        # written back (nobody holds the lock)
        assert json.loads(index.read_bytes()) == good
        r = fl.run("list", "S1", "-q")
        assert r.err == ""


def test_show_human_and_files(three):
    fl, ids = three
    r = fl.run("show", "S1", ids[1])
    assert r.rc == 0, r
    m = fl.manifest("S1", ids[1])
    assert f"Backup:     {ids[1]}" in r.out
    assert "Type:       incremental" in r.out and "Seq:        2" in r.out
    assert f"Base:       {ids[0]}" in r.out and "second\\nline" in r.out
    assert m["archive"]["sha256"] in r.out and "2025-12-01T03:16:00Z" in r.out
    assert "Entries:" not in r.out
    r = fl.run("show", "S1", "latest", "--files")
    assert r.rc == 0, r
    mc = fl.manifest("S1", ids[2])
    entry_lines = r.out.split("Entries:\n", 1)[1].splitlines()[1:]
    assert len(entry_lines) == len(mc["entries"])
    for e, line in zip(mc["entries"], entry_lines):
        cols = line.split()
        assert cols[0] == e["type"] and cols[1] == "%04o" % e["mode"]
        assert cols[3] == str(e["size"]) and e["path"] in line
    assert re.search(r"symlink .* artifacts/latest-weights -> models/weights\.bin", r.out)


def test_show_json_is_the_manifest(three):
    fl, ids = three
    r = fl.run("show", "S1", ids[0], "--json")
    assert r.rc == 0, r
    assert r.json() == fl.manifest("S1", ids[0])


def test_show_missing_backup_is_not_found(three):
    fl, ids = three
    r = fl.run("show", "S1", "20200101T000000Z-full-abcdef")
    assert r.rc == 3 and "20200101T000000Z-full-abcdef" in r.err, r
    fl.session("S9", realistic=False)
    r = fl.run("show", "S9", "latest")
    assert r.rc == 3, r


def test_verify_all_good(three):
    fl, ids = three
    before = tree_snapshot(fl.store)
    r = fl.run("verify", "S1")
    assert r.rc == 0, r
    assert [ln for ln in r.out.splitlines() if ln.startswith("OK ")] == [f"OK {i}" for i in ids]
    assert "3 backups checked: 3 OK, 0 corrupt" in r.out
    r = fl.run("verify", "S1", "--json")
    assert r.rc == 0
    j = r.json()
    assert j["ok"] is True and j["checked"] == 3 and j["corrupt"] == 0
    assert [x["id"] for x in j["results"]] == ids
    assert all(x["status"] == "ok" and x["error"] is None for x in j["results"])
    r = fl.run("verify", "S1", "latest")
    assert r.rc == 0 and r.out.startswith(f"OK {ids[2]}\n"), r
    assert tree_snapshot(fl.store) == before


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def damage_flip_middle(fl, bid):
    arch = fl.archive("S1", bid)
    flip_byte(arch, arch.stat().st_size // 2)


def damage_flip_seek_table(fl, bid):
    arch = fl.archive("S1", bid)
    flip_byte(arch, arch.stat().st_size - 12)


def damage_truncate(fl, bid):
    arch = fl.archive("S1", bid)
    os.truncate(arch, arch.stat().st_size // 2)


def damage_remove_archive(fl, bid):
    fl.archive("S1", bid).unlink()


def damage_invalid_manifest(fl, bid):
    (fl.store / "S1" / bid / "manifest.json").write_text('{"format": 1, "backup_id": ')


def damage_empty_manifest(fl, bid):
    (fl.store / "S1" / bid / "manifest.json").write_bytes(b"")


def damage_manifest_lies_about_a_file(fl, bid):
    path = fl.store / "S1" / bid / "manifest.json"
    m = json.loads(path.read_bytes())
    f = next(e for e in m["entries"] if e["type"] == "file" and e["size"] > 0)
    f["sha256"] = "0" * 64
    path.write_text(json.dumps(m, indent=2))


@pytest.mark.parametrize("damage", [
    damage_flip_middle, damage_flip_seek_table, damage_truncate, damage_remove_archive,
    damage_invalid_manifest, damage_empty_manifest, damage_manifest_lies_about_a_file,
])
def test_verify_reports_damage_exit_1_and_modifies_nothing(three, damage):
    fl, ids = three
    bad = ids[0]
    damage(fl, bad)
    before = tree_snapshot(fl.store)
    r = fl.run("verify", "S1")
    assert r.rc == 1, r
    corrupt = [ln for ln in r.out.splitlines() if ln.startswith("CORRUPT ")]
    assert len(corrupt) == 1 and corrupt[0].startswith(f"CORRUPT {bad}: "), r
    assert f"OK {ids[1]}" in r.out and f"OK {ids[2]}" in r.out
    # verifying only the damaged one, or only a good one
    assert fl.run("verify", "S1", bad).rc == 1
    assert fl.run("verify", "S1", ids[2]).rc == 0
    j = fl.run("verify", "S1", "--json").json()
    assert j["ok"] is False and j["corrupt"] == 1
    assert [x["status"] for x in j["results"]] == ["corrupt", "ok", "ok"]
    assert tree_snapshot(fl.store) == before


def test_verify_reports_a_missing_manifest_and_a_deleted_backup(three):
    fl, ids = three
    (fl.store / "S1" / ids[0] / "manifest.json").unlink()
    r = fl.run("verify", "S1")
    assert r.rc == 1, r
    assert re.search(rf"^CORRUPT {ids[0]}: .*manifest", r.out, re.M)
    import shutil
    shutil.rmtree(fl.store / "S1" / ids[1])
    r = fl.run("verify", "S1")
    assert r.rc == 1, r
    assert f"CORRUPT {ids[1]}" in r.out


def test_verify_reports_an_index_that_disagrees(three):
    fl, ids = three
    index = fl.store / "S1" / "index.json"
    idx = json.loads(index.read_bytes())
    idx["backups"][1]["files"] += 1
    index.write_text(json.dumps(idx))
    r = fl.run("verify", "S1")
    assert r.rc == 1, r
    assert re.search(rf"^CORRUPT {ids[1]}: .*files", r.out, re.M), r


def test_verify_all_sessions(fl):
    fl.session("A")
    fl.session("B")
    a = fl.backup("full", sid="A", now=NOW)
    b = fl.backup("full", sid="B", now=NOW)
    r = fl.run("verify", "--all")
    assert r.rc == 0, r
    assert f"OK A/{a['id']}" in r.out and f"OK B/{b['id']}" in r.out
    flip_byte(fl.archive("B", b["id"]), 100)
    r = fl.run("verify", "--all")
    assert r.rc == 1 and f"CORRUPT B/{b['id']}" in r.out, r


def test_verify_reports_a_forgotten_backup_once_and_the_index_is_rebuilt(three):
    fl, ids = three
    index = fl.store / "S1" / "index.json"
    idx = json.loads(index.read_bytes())
    idx["backups"] = idx["backups"][:2]  # as after a crash before the index update
    index.write_text(json.dumps(idx))
    r = fl.run("verify", "S1")
    assert r.rc == 1, r
    assert f"CORRUPT S1/index.json: does not list backup {ids[2]}" in r.out
    assert f"OK {ids[2]}" in r.out and "rebuilt" in r.err
    assert [b["id"] for b in fl.index("S1")["backups"]] == ids
    r = fl.run("verify", "S1")
    assert r.rc == 0 and r.err == "", r
