"""`backup`: full and incremental end to end, the store layout on disk, the
manifest and index fields, interoperability of the archives with GNU tar,
zstd and bsdtar, and the human and JSON reports."""
import base64
import json
import os
import re
import shutil
import socket
import stat
import subprocess

import pytest

from fbhelpers import FlowLoom, sha256_bytes, sha256_file

ID_RE = re.compile(r"^\d{8}T\d{6}Z-(full|incr)-[0-9a-f]{6}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NOW = 1764558900  # 2025-12-01T03:15:00Z


def walk_source(sdir):
    """relpath (bytes) -> lstat of every entry below the session dir."""
    out = {}
    top = os.fsencode(str(sdir))
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, top)] = os.lstat(full)
    return out


def entry_path(e):
    if "path_b64" in e:
        return base64.b64decode(e["path_b64"])
    return e["path"].encode()


def extract_with_tar(archive, dest):
    dest.mkdir()
    r = subprocess.run(["tar", "--zstd", "-xpf", str(archive), "-C", str(dest)],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    return dest


def assert_tree_equal(src, dst, paths=None):
    """Every entry of src (or just paths) exists in dst with the same type,
    bytes, symlink target and permission bits."""
    src_b, dst_b = os.fsencode(str(src)), os.fsencode(str(dst))
    entries = paths if paths is not None else list(walk_source(src))
    for rel in entries:
        s = os.lstat(os.path.join(src_b, rel))
        d = os.lstat(os.path.join(dst_b, rel))
        assert stat.S_IFMT(s.st_mode) == stat.S_IFMT(d.st_mode), rel
        if stat.S_ISLNK(s.st_mode):
            assert os.readlink(os.path.join(src_b, rel)) == os.readlink(os.path.join(dst_b, rel))
            continue
        assert stat.S_IMODE(s.st_mode) == stat.S_IMODE(d.st_mode), rel
        if stat.S_ISREG(s.st_mode):
            with open(os.path.join(src_b, rel), "rb") as a, open(os.path.join(dst_b, rel), "rb") as b:
                assert a.read() == b.read(), rel


def test_full_backup_writes_store_layout_and_manifest(fl1):
    sdir = fl1.sessions / "S1"
    os.umask(0o022)  # the store must be private whatever the umask
    r = fl1.run("backup", "S1", "full", "first milestone", env={"FLOWLOOM_NOW": str(NOW)})
    assert r.rc == 0, r
    [bid] = fl1.backup_ids("S1")
    assert ID_RE.match(bid) and bid.startswith("20251201T031500Z-full-")
    assert bid in r.out and "first milestone" in r.out and "full" in r.out

    # layout and permissions
    for d in (fl1.store, fl1.store / "S1", fl1.store / "S1" / bid):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    for f in (fl1.store / "S1" / "index.json", fl1.store / "S1" / bid / "manifest.json",
              fl1.archive("S1", bid)):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    leftovers = [p.name for p in (fl1.store / "S1").iterdir()
                 if p.name.startswith((".tmp-", ".trash-"))]
    assert leftovers == []

    # index.json: parses with jq and with python, lists exactly the backup
    jq = subprocess.run(["jq", "-e", ".backups[0].id", str(fl1.store / "S1" / "index.json")],
                        capture_output=True, text=True)
    assert jq.returncode == 0 and json.loads(jq.stdout) == bid
    idx = fl1.index("S1")
    assert idx["format"] == 1 and idx["session_id"] == "S1"
    [rec] = idx["backups"]

    m = fl1.manifest("S1", bid)
    assert m["format"] == 1 and m["backup_id"] == bid and m["seq"] == 1
    assert m["session_id"] == "S1" and m["type"] == "full"
    assert m["created_at"] == "2025-12-01T03:15:00Z" and RFC3339_RE.match(m["created_at"])
    assert m["note"] == "first milestone" and m["base"] is None
    assert isinstance(m["tool_version"], str) and m["tool_version"]
    arch = fl1.archive("S1", bid)
    assert m["archive"]["size"] == os.path.getsize(arch)
    assert m["archive"]["sha256"] == sha256_file(arch)
    assert m["archive"]["frame_size"] == 1048576 and m["archive"]["level"] == 3
    assert m["archive"]["frames"] >= 1

    # entries: exactly the session's entries, with their metadata
    src = walk_source(sdir)
    by_path = {entry_path(e): e for e in m["entries"]}
    assert set(by_path) == set(src)
    assert b"" not in by_path and b"." not in by_path
    files = hardlinks = dirs = links = nbytes = 0
    for rel, e in by_path.items():
        st = src[rel]
        for key in ("path", "type", "mode", "uid", "gid", "mtime", "mtime_nsec", "size"):
            assert key in e, (rel, key)
        assert e["mode"] == stat.S_IMODE(st.st_mode)
        assert e["uid"] == st.st_uid and e["gid"] == st.st_gid
        assert e["mtime"] * 10**9 + e["mtime_nsec"] == st.st_mtime_ns, rel
        if e["type"] == "file":
            files += 1
            nbytes += e["size"]
            data = open(os.path.join(os.fsencode(str(sdir)), rel), "rb").read()
            assert e["size"] == len(data) and e["sha256"] == sha256_bytes(data)
            assert isinstance(e["offset"], int)
        elif e["type"] == "hardlink":
            hardlinks += 1
            assert by_path[e["link"].encode()]["type"] == "file"
            assert os.path.samestat(st, src[e["link"].encode()])
        elif e["type"] == "symlink":
            links += 1
            assert e["target"].encode() == os.readlink(os.path.join(os.fsencode(str(sdir)), rel))
        else:
            assert e["type"] == "dir" and stat.S_ISDIR(st.st_mode)
            dirs += 1
    assert hardlinks == 1 and links == 1
    assert m["totals"] == {"files": files + hardlinks, "dirs": dirs, "symlinks": links,
                           "bytes": nbytes}
    # nanoseconds survive
    assert by_path[b"state.json"]["mtime_nsec"] == 123456789

    # the index record agrees with the manifest
    assert rec["id"] == bid and rec["seq"] == 1 and rec["type"] == "full"
    assert rec["created_at"] == m["created_at"] and rec["note"] == "first milestone"
    assert rec["files"] == m["totals"]["files"] and rec["bytes"] == m["totals"]["bytes"]
    assert rec["stored_bytes"] == m["archive"]["size"]
    assert rec["archive_sha256"] == m["archive"]["sha256"]


def test_manifest_is_compact_with_one_entry_per_line(fl1):
    """SPEC "manifest.json": the top-level fields on the first line, then
    "entries":[ and one entry per line, so jq reads it whole and grep finds
    an entry by its path; show --json prints it as stored."""
    bid = fl1.backup("full")["id"]
    path = fl1.store / "S1" / bid / "manifest.json"
    text = path.read_text()
    lines = text.split("\n")
    assert lines[0].startswith('{"format":1,"backup_id":"') and lines[0].endswith('"entries":[')
    assert lines[-2:] == ["]}", ""]
    m = json.loads(text)
    entries = lines[1:-2]
    assert len(entries) == len(m["entries"]) > 3
    for line, e in zip(entries, m["entries"]):
        assert json.loads(line.rstrip(",")) == e and line.startswith('{"path":')
    grep = subprocess.run(["grep", '"path":"state.json"', str(path)], capture_output=True,
                          text=True)
    assert grep.returncode == 0 and len(grep.stdout.splitlines()) == 1
    assert json.loads(grep.stdout.strip().rstrip(","))["path"] == "state.json"
    jq = subprocess.run(["jq", "-e", ".entries | length", str(path)], capture_output=True,
                        text=True)
    assert jq.returncode == 0 and int(jq.stdout) == len(m["entries"])
    r = fl1.run("show", bid, "--json", "--session", "S1")
    assert r.rc == 0 and r.out == text, r


def test_incremental_backup_takes_json_and_state_with_base(fl1):
    full = fl1.backup("full", now=NOW)
    sdir = fl1.sessions / "S1"
    (sdir / "state.json").write_text('{"step": 18}\n')
    (sdir / "logs" / "run.log").write_text("changed\n")
    r = fl1.run("backup", "S1", "incremental", "after step 18",
                env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0, r
    incr_id = [b for b in fl1.backup_ids("S1") if "-incr-" in b][0]
    assert incr_id.startswith("20251201T031600Z-incr-")
    m = fl1.manifest("S1", incr_id)
    assert m["type"] == "incremental" and m["base"] == full["id"] and m["seq"] == 2
    assert m["note"] == "after step 18"
    paths = sorted(e["path"] for e in m["entries"])
    assert paths == ["metadata.json", "state", "state.json", "state/notes.md", "state/plan.json"]
    st = {e["path"]: e for e in m["entries"]}
    assert st["state.json"]["sha256"] == sha256_bytes(b'{"step": 18}\n')
    idx = fl1.index("S1")
    assert [b["id"] for b in idx["backups"]] == [full["id"], incr_id]
    assert idx["backups"][1]["base"] == full["id"]


def test_default_type_is_incremental(fl1):
    r = fl1.ok("backup", env={"FLOWLOOM_NOW": str(NOW)})
    [bid] = fl1.backup_ids("S1")
    assert "-incr-" in bid and "incremental" in r.out
    m = fl1.manifest("S1", bid)
    assert m["base"] is None  # no full backup yet


def test_every_archive_extracts_with_tar_zstd_and_bsdtar(fl1, tmp_path):
    fl1.backup("full", now=NOW)
    fl1.backup("incremental", now=NOW + 1)
    sdir = fl1.sessions / "S1"
    for i, bid in enumerate(fl1.backup_ids("S1")):
        arch = fl1.archive("S1", bid)
        z = subprocess.run(["zstd", "-t", "-q", str(arch)], capture_output=True)
        assert z.returncode == 0, z.stderr
        dest = extract_with_tar(arch, tmp_path / f"x{i}")
        m = fl1.manifest("S1", bid)
        paths = [entry_path(e) for e in m["entries"]]
        assert_tree_equal(sdir, dest, paths)
        # nothing extra came out of the archive
        assert set(walk_source(dest)) == set(paths)
        if m["type"] == "full":
            w = os.lstat(dest / "artifacts" / "blob.dat")
            h = os.lstat(dest / "artifacts" / "blob-hardlink.dat")
            assert w.st_ino == h.st_ino  # the hardlink came back as a hardlink
        bsd = subprocess.run(["bsdtar", "-tf", str(arch)], capture_output=True)
        assert bsd.returncode == 0, bsd.stderr
        assert len(bsd.stdout.splitlines()) == len(paths)


def test_manifest_offsets_point_at_file_data(fl1):
    fl1.backup("full", now=NOW)
    [bid] = fl1.backup_ids("S1")
    stream = subprocess.run(["zstd", "-dc", str(fl1.archive("S1", bid))],
                            capture_output=True, check=True).stdout
    m = fl1.manifest("S1", bid)
    assert len(stream) % 512 == 0
    for e in m["entries"]:
        if e["type"] == "file":
            data = stream[e["offset"]:e["offset"] + e["size"]]
            assert sha256_bytes(data) == e["sha256"], e["path"]


def test_json_report_has_the_facts(fl1):
    out = fl1.backup("full", "--note", "n1", now=NOW)
    [bid] = fl1.backup_ids("S1")
    m = fl1.manifest("S1", bid)
    assert out["id"] == bid and out["session_id"] == "S1" and out["type"] == "full"
    assert out["created_at"] == "2025-12-01T03:15:00Z" and out["note"] == "n1"
    assert out["base"] is None and out["seq"] == 1
    assert out["files"] == m["totals"]["files"] and out["bytes"] == m["totals"]["bytes"]
    assert out["stored_bytes"] == os.path.getsize(fl1.archive("S1", bid))
    assert abs(out["ratio"] - m["totals"]["bytes"] / out["stored_bytes"]) < 0.01
    assert out["path"] == str(fl1.store.resolve() / "S1" / bid)
    assert out["verified"] is True
    ret = out["retention"]
    assert ret["policy"] == {"keep_full": 10, "max_age_days": 30, "min_keep": 1}
    assert ret["removed"] == [] and [k["id"] for k in ret["kept"]] == [bid]
    assert "newest" in ret["kept"][0]["rule"]


def test_json_integers_above_2_31_are_exact(fl1):
    # 2^31 + 5 bytes of zeros: a size cJSON's number printer would write as %g
    big = fl1.sessions / "S1" / "artifacts" / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(2**31 + 5)
    r = fl1.run("backup", "S1", "full", "--json", env={"FLOWLOOM_NOW": str(NOW)}, timeout=600)
    assert r.rc == 0, r
    assert re.search(rb'"bytes":\s*(\d+)', r.stdout_bytes)
    out = r.json()
    assert out["bytes"] >= 2**31 + 5 and isinstance(out["bytes"], int)
    lst = fl1.run("list", "S1", "--json")
    assert lst.json()[0]["bytes"] == out["bytes"]


def test_human_report_names_everything(fl1):
    r = fl1.run("backup", "S1", "full", "release 1", "-v", env={"FLOWLOOM_NOW": str(NOW)})
    assert r.rc == 0, r
    [bid] = fl1.backup_ids("S1")
    m = fl1.manifest("S1", bid)
    assert f"Backup {bid}" in r.out
    assert "2025-12-01 03:15:00" in r.out  # TZ=UTC in the test environment
    assert "release 1" in r.out
    assert re.search(rf"files:\s+{m['totals']['files']}\b", r.out)
    assert f"({m['totals']['bytes']} bytes)" in r.out
    assert f"({m['archive']['size']} bytes" in r.out and "ratio" in r.out
    assert str(fl1.store.resolve() / "S1" / bid) in r.out
    assert "validation: passed" in r.out
    assert "keep_full 10" in r.out and "kept: newest" in r.out
    for name in ("logs/run.log", "artifacts/models/weights.bin", "metadata.json"):
        assert name in r.out  # -v lists the names


def test_quiet_prints_nothing_and_no_verify_says_skipped(fl1):
    r = fl1.run("backup", "S1", "full", "-q")
    assert r.rc == 0 and r.out == "" and r.err == ""
    r = fl1.run("backup", "S1", "full", "--no-verify", "--no-cleanup")
    assert r.rc == 0, r
    assert "validation: skipped" in r.out and "not applied" in r.out
    assert len(fl1.backup_ids("S1")) == 2


def test_flowloom_now_sets_the_id_and_created_at(fl1):
    out = fl1.backup("full", now=1893456000)  # 2030-01-01T00:00:00Z
    assert out["id"].startswith("20300101T000000Z-full-")
    assert out["created_at"] == "2030-01-01T00:00:00Z"


def test_bad_flowloom_now_is_a_usage_error(fl1):
    for bad in ("abc", "12x", "1.5", "-5", "99999999999999999999"):
        r = fl1.run("backup", "S1", "full", env={"FLOWLOOM_NOW": bad})
        assert r.rc == 2, (bad, r)
        assert "FLOWLOOM_NOW" in r.err
    assert not fl1.store.exists()


def test_two_backups_in_one_second_order_by_seq(fl1):
    a = fl1.backup("full", now=NOW)
    b = fl1.backup("full", now=NOW)
    c = fl1.backup("incremental", now=NOW)
    assert (a["seq"], b["seq"], c["seq"]) == (1, 2, 3)
    assert len({a["id"], b["id"], c["id"]}) == 3
    assert c["base"] == b["id"]
    ids = [x["id"] for x in fl1.run("list", "S1", "--json").json()]
    assert ids == [a["id"], b["id"], c["id"]]


def test_empty_session_backs_up_zero_files(fl, tmp_path):
    fl.session("E", realistic=False)
    out = fl.backup("full", sid="E", now=NOW)
    assert out["files"] == 0 and out["bytes"] == 0
    m = fl.manifest("E", out["id"])
    assert m["entries"] == [] and m["totals"] == {"files": 0, "dirs": 0, "symlinks": 0, "bytes": 0}
    dest = extract_with_tar(fl.archive("E", out["id"]), tmp_path / "x")
    assert list(dest.iterdir()) == []
    r = fl.run("verify", "E")
    assert r.rc == 0 and f"OK {out['id']}" in r.out


def test_symlink_to_outside_is_stored_as_link_never_followed(fl, tmp_path):
    secret = tmp_path / "outside-secret.txt"
    secret.write_bytes(b"TOP-SECRET-CONTENT-0123456789" * 10)
    sdir = fl.session("S1", realistic=False)
    (sdir / "a.json").write_text("{}")
    os.symlink(str(secret), sdir / "escape")
    os.symlink("/etc", sdir / "etc-dir")
    out = fl.backup("full", now=NOW)
    m = fl.manifest("S1", out["id"])
    ent = {e["path"]: e for e in m["entries"]}
    assert ent["escape"]["type"] == "symlink" and ent["escape"]["target"] == str(secret)
    assert ent["etc-dir"]["type"] == "symlink" and ent["etc-dir"]["target"] == "/etc"
    assert set(ent) == {"a.json", "escape", "etc-dir"}
    stream = subprocess.run(["zstd", "-dc", str(fl.archive("S1", out["id"]))],
                            capture_output=True, check=True).stdout
    assert b"TOP-SECRET-CONTENT" not in stream
    assert b"root:x:0:0" not in stream


def test_fifo_and_socket_are_skipped_with_a_warning_and_do_not_block(fl):
    sdir = fl.session("S1", realistic=False)
    (sdir / "state.json").write_text("{}")
    os.mkfifo(sdir / "pipe")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sdir / "sock"))
    try:
        r = fl.run("backup", "S1", "full", "--json", timeout=30)
    finally:
        sock.close()
    assert r.rc == 0, r
    assert "pipe" in r.err and "sock" in r.err and "warning" in r.err
    m = fl.manifest("S1", r.json()["id"])
    assert [e["path"] for e in m["entries"]] == ["state.json"]


def test_a_warned_name_is_escaped_once(fl):
    """Core escapes the name in its message; the CLI must not escape the
    backslash of that escape again (issue 8: 'a\\nb' was printed)."""
    sdir = fl.session("S1", realistic=False)
    (sdir / "state.json").write_text("{}")
    os.mkfifo(os.path.join(os.fsencode(str(sdir)), b"a\nb"))
    r = fl.run("backup", "S1", "full", timeout=30)
    assert r.rc == 0, r
    warn = [line for line in r.err.splitlines() if "FIFO" in line]
    assert warn == ["flowloom-backup: warning: skipped FIFO: a\\nb"], r.err


ODD_NAMES = [
    b"name with spaces.txt",
    b"new\nline.txt",
    b"caf\xe9-latin1.txt",          # not UTF-8
    b"\xff\xfe-bytes",
    b"x" * 255,                      # longest name a file system allows
    "ünïcødé-名前.json".encode(),
    b"back\\slash",
]


def test_odd_names_and_deep_paths_round_trip_through_tar(fl, tmp_path):
    sdir = fl.session("S1", realistic=False)
    sb = os.fsencode(str(sdir))
    for i, name in enumerate(ODD_NAMES):
        with open(os.path.join(sb, name), "wb") as f:
            f.write(b"content %d " % i + name)
    deep = sb
    for i in range(60):
        deep = os.path.join(deep, b"level%02d-directory" % i)
    os.makedirs(deep)
    with open(os.path.join(deep, b"leaf.txt"), "wb") as f:
        f.write(b"deep leaf")
    assert len(os.path.relpath(deep, sb)) > 1000
    out = fl.backup("full", now=NOW)
    m = fl.manifest("S1", out["id"])
    stored = {entry_path(e) for e in m["entries"]}
    for name in ODD_NAMES:
        assert name in stored, name
    # non-UTF-8 names carry their exact bytes in path_b64
    latin = [e for e in m["entries"] if entry_path(e) == b"caf\xe9-latin1.txt"][0]
    assert "path_b64" in latin
    dest = extract_with_tar(fl.archive("S1", out["id"]), tmp_path / "x")
    assert_tree_equal(sdir, dest)
    assert set(walk_source(dest)) == set(walk_source(sdir))
    assert fl.run("verify", "S1").rc == 0
    # names are shown escaped, one entry per line, never raw control chars
    show = fl.run("show", "S1", "latest", "--files")
    assert show.rc == 0, show
    assert "new\\nline.txt" in show.out and "caf\\xe9-latin1.txt" in show.out


def test_unreadable_file_fails_the_backup_naming_it(shared_tmp, fb_bin):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is not installed (util-linux)")
    # the binary must be reachable by nobody
    binary = shared_tmp / "flowloom-backup"
    shutil.copy2(fb_bin, binary)
    os.chmod(binary, 0o755)
    fl = FlowLoom(shared_tmp / "root", binary)
    sdir = fl.session("S1")
    (sdir / "secret.json").write_text('{"k": 1}')
    subprocess.run(["chown", "-R", "nobody:nogroup", str(shared_tmp / "root")], check=True)
    os.chmod(sdir / "secret.json", 0)
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    probe = subprocess.run(as_nobody + ["true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot switch to nobody here: {probe.stderr!r}")
    r = fl.run("backup", "S1", "full", prefix=as_nobody)
    assert r.rc == 5, r
    assert "secret.json" in r.err
    # nothing published: no backup dir, no index entry, no leftovers
    assert fl.backup_ids("S1") == []
    sess_store = fl.store / "S1"
    if sess_store.exists():
        names = [p.name for p in sess_store.iterdir()]
        assert all(n in (".lock", "index.json") for n in names), names
        if (sess_store / "index.json").exists():
            assert fl.index("S1")["backups"] == []
    # readable again: the same command succeeds
    os.chmod(sdir / "secret.json", 0o600)
    r = fl.run("backup", "S1", "full", prefix=as_nobody)
    assert r.rc == 0, r
    assert len(fl.backup_ids("S1")) == 1


def test_retention_in_the_report_removes_excess_full_backups(fl1):
    (fl1.flowloom / "backup.json").write_text(
        json.dumps({"retention": {"keep_full": 2, "max_age_days": 0, "min_keep": 1}}))
    a = fl1.backup("full", now=NOW)
    b = fl1.backup("full", now=NOW + 10)
    c = fl1.backup("full", now=NOW + 20)
    ret = c["retention"]
    assert ret["policy"] == {"keep_full": 2, "max_age_days": 0, "min_keep": 1}
    assert [x["id"] for x in ret["removed"]] == [a["id"]]
    assert sorted(x["id"] for x in ret["kept"]) == sorted([b["id"], c["id"]])
    assert fl1.backup_ids("S1") == sorted([b["id"], c["id"]])
    assert [x["id"] for x in fl1.index("S1")["backups"]] == [b["id"], c["id"]]
    r = fl1.run("backup", "S1", "full", env={"FLOWLOOM_NOW": str(NOW + 30)})
    assert r.rc == 0
    assert f"{b['id']}  removed:" in r.out and "max_age_days 0 (no age limit)" in r.out


def test_forced_progress_goes_to_stderr_only(fl1):
    r = fl1.run("backup", "S1", "full", "--progress", "--json")
    assert r.rc == 0, r
    out = r.json()  # stdout stays pure JSON
    assert out["type"] == "full"
    # Not a terminal: a log of whole lines, no carriage returns.
    assert "%" in r.err and r.err.endswith("\n") and "\r" not in r.err
    r = fl1.run("backup", "S1", "full", "--no-progress")
    assert r.rc == 0 and r.err == "", r


def test_progress_is_off_when_stderr_is_not_a_terminal(fl1):
    r = fl1.run("backup", "S1", "full")
    assert r.rc == 0 and "\r" not in r.err, r


def retention_lines(out):
    """The retention line of a human report and the lines indented below it."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  retention:  "))
    block = [lines[at]]
    for line in lines[at + 1:]:
        if not line.startswith("    "):
            break
        block.append(line)
    return block


def test_retention_report_summarises_what_was_kept(fl1):
    # issue 9, point 10: every backup listed every kept backup again
    first = fl1.backup("full", now=NOW)
    r = fl1.run("backup", "S1", "full", env={"FLOWLOOM_NOW": str(NOW + 10)})
    assert r.rc == 0, r
    assert retention_lines(r.out) == [
        "  retention:  kept all 2 backups; policy keep_full 10, max_age_days 30, min_keep 1"]
    assert first["id"] not in r.out

    # -v names each kept backup with its rule, in index order
    r = fl1.run("backup", "S1", "incremental", "-v", env={"FLOWLOOM_NOW": str(NOW + 20)})
    assert r.rc == 0, r
    a, b, c = fl1.index("S1")["backups"]
    assert retention_lines(r.out) == [
        "  retention:  kept all 3 backups; policy keep_full 10, max_age_days 30, min_keep 1",
        f"    {a['id']}  kept: within policy",
        f"    {b['id']}  kept: newest full",
        f"    {c['id']}  kept: newest backup",
    ]
    # --json is unchanged: every decision, kept and removed
    j = fl1.backup("incremental", now=NOW + 30)
    assert len(j["retention"]["kept"]) == 4 and j["retention"]["removed"] == []


def test_retention_report_of_the_only_backup(fl1):
    r = fl1.run("backup", "S1", "full", env={"FLOWLOOM_NOW": str(NOW)})
    assert r.rc == 0, r
    assert retention_lines(r.out) == [
        "  retention:  kept the only backup; policy keep_full 10, max_age_days 30, min_keep 1"]


def test_retention_report_names_what_was_removed_and_why(fl1):
    (fl1.flowloom / "backup.json").write_text(
        json.dumps({"retention": {"keep_full": 1, "max_age_days": 0, "min_keep": 1}}))
    old = fl1.backup("full", "--no-cleanup", now=NOW)
    incr = fl1.backup("incremental", "--no-cleanup", now=NOW + 10)
    r = fl1.run("backup", "S1", "full", env={"FLOWLOOM_NOW": str(NOW + 20)})
    assert r.rc == 0, r
    new = [b["id"] for b in fl1.index("S1")["backups"]][-1]
    assert retention_lines(r.out) == [
        "  retention:  removed 1 backup, kept 2; policy keep_full 1, "
        "max_age_days 0 (no age limit), min_keep 1",
        f"    {old['id']}  removed: not the newest full backup",
    ]
    assert incr["id"] not in r.out and fl1.backup_ids("S1") == sorted([incr["id"], new])

    newer = fl1.backup("full", "--no-cleanup", now=NOW + 30)["id"]
    r = fl1.run("backup", "S1", "full", "-v", env={"FLOWLOOM_NOW": str(NOW + 40)})
    assert r.rc == 0, r
    newest = [b["id"] for b in fl1.index("S1")["backups"]][-1]
    assert retention_lines(r.out) == [
        "  retention:  removed 2 backups, kept 2; policy keep_full 1, "
        "max_age_days 0 (no age limit), min_keep 1",
        f"    {incr['id']}  kept: within policy",
        f"    {new}  removed: not the newest full backup",
        f"    {newer}  removed: not the newest full backup",
        f"    {newest}  kept: newest backup",
    ]
