"""tests/lib/invariants.sh itself: silent on a sound store, and each
invariant fails, naming itself, when the store (or a lying CLI) breaks it.
Without this the fault tests could pass on a checker that checks nothing."""
import fcntl
import json
import os
import subprocess

import pytest

from relhelpers import FLIP_BYTE, INVARIANTS, invariants, small_session, write_config


@pytest.fixture
def two(fl):
    write_config(fl)
    sdir = small_session(fl)
    a = fl.backup("full", sid="S")["id"]
    (sdir / "state.json").write_text("{}\n")
    b = fl.backup("incremental", sid="S")["id"]
    return fl, [a, b]


def expect_failure(r, inv):
    assert r.rc == 1, r
    assert r.err.startswith(f"invariants: INV{inv} "), r


def test_sound_store_passes_and_usage(two):
    fl, ids = two
    r = invariants(fl, extract=True)
    assert r.rc == 0 and r.err == "", r
    # a session with no backups at all is sound too
    fl.sessions.joinpath("E").mkdir()
    assert invariants(fl, "E").rc == 0
    proc = subprocess.run(["bash", str(INVARIANTS), str(fl.root)], capture_output=True)
    assert proc.returncode == 2 and b"usage" in proc.stderr


def test_inv1_unparseable_or_wrong_index(two):
    fl, ids = two
    index = fl.store / "S" / "index.json"
    good = index.read_bytes()
    index.write_text("{")
    expect_failure(invariants(fl), 1)
    index.write_text(json.dumps({"format": 1, "session_id": "T", "backups": []}))
    expect_failure(invariants(fl), 1)
    index.write_bytes(good)
    assert invariants(fl).rc == 0


def test_inv2_archive_manifest_and_seq(two, tmp_path):
    fl, ids = two
    sd = fl.store / "S"
    index = sd / "index.json"
    good = index.read_bytes()
    subprocess.run([str(FLIP_BYTE), str(fl.archive("S", ids[0])), "500"], check=True)
    r = invariants(fl)
    expect_failure(r, 2)
    assert ids[0] in r.err and "archive" in r.err
    # ...unless the test says it damaged that backup on purpose
    assert invariants(fl, corrupt=[ids[0]]).rc == 0
    subprocess.run([str(FLIP_BYTE), str(fl.archive("S", ids[0])), "500"], check=True)
    idx = json.loads(good)
    idx["backups"][0]["seq"], idx["backups"][1]["seq"] = 2, 1
    index.write_text(json.dumps(idx))
    expect_failure(invariants(fl), 2)
    os.rename(sd / ids[1], tmp_path / "moved")
    index.write_bytes(good)
    r = invariants(fl)
    expect_failure(r, 2)
    assert "no directory" in r.err
    os.rename(tmp_path / "moved", sd / ids[1])
    assert invariants(fl).rc == 0


def fake_cli(tmp_path, fl, body):
    """A wrapper around the real binary whose list/verify can be made to lie."""
    path = tmp_path / "fake-fb"
    path.write_text("#!/bin/bash\nreal=%s\n%s\nexec \"$real\" \"$@\"\n" % (fl.bin, body))
    path.chmod(0o755)
    return path


def run_with(fl, binary):
    env = dict(os.environ, FB_BIN=str(binary))
    proc = subprocess.run(["bash", str(INVARIANTS), str(fl.root), "S"], env=env,
                          capture_output=True, text=True)
    return proc


def test_inv3_list_that_differs_from_the_index(two, tmp_path):
    fl, ids = two
    extra = fake_cli(tmp_path, fl, 'case " $* " in *" list "*) '
                     '"$real" "$@" | jq -c \'. + [{"id": ".tmp-0123"}]\'; exit 0 ;; esac')
    proc = run_with(fl, extra)
    assert proc.returncode == 1 and proc.stderr.startswith("invariants: INV3 "), proc.stderr
    short = fake_cli(tmp_path, fl, 'case " $* " in *" list "*) '
                     '"$real" "$@" | jq -c \'.[:1]\'; exit 0 ;; esac')
    proc = run_with(fl, short)
    assert proc.returncode == 1 and proc.stderr.startswith("invariants: INV3 "), proc.stderr


def test_inv4_verify_failing_or_writing(two, tmp_path):
    fl, ids = two
    failing = fake_cli(tmp_path, fl, 'case " $* " in *" verify "*) echo "CORRUPT x: y"; '
                       'exit 1 ;; esac')
    proc = run_with(fl, failing)
    assert proc.returncode == 1 and proc.stderr.startswith("invariants: INV4 "), proc.stderr
    writing = fake_cli(tmp_path, fl, 'case " $* " in *" verify "*) '
                       f'touch {fl.store}/S/stray ;; esac')
    proc = run_with(fl, writing)
    assert proc.returncode == 1 and proc.stderr.startswith("invariants: INV4 "), proc.stderr


def test_inv5_archive_content_against_manifest(two, tmp_path):
    fl, ids = two
    # a manifest hash that does not match the stored bytes, with every
    # archive-level check still consistent: only extraction can tell
    mpath = fl.store / "S" / ids[1] / "manifest.json"
    m = json.loads(mpath.read_bytes())
    f = next(e for e in m["entries"] if e["type"] == "file")
    f["sha256"] = "0" * 64
    mpath.write_text(json.dumps(m, indent=2))
    r = invariants(fl, corrupt=[ids[1]], extract=True)
    assert r.rc == 0, r  # excluded on purpose
    r = invariants(fl, extract=True)
    assert r.rc == 1 and r.err.startswith("invariants: INV4 "), r
    # with a verify that (wrongly) passes everything, extraction still catches it
    blind = fake_cli(tmp_path, fl, 'case " $* " in *" verify "*) printf "OK %%s\\n" %s; '
                     'exit 0 ;; esac' % " ".join(ids))
    env = dict(os.environ, FB_BIN=str(blind), INV_EXTRACT="1")
    proc = subprocess.run(["bash", str(INVARIANTS), str(fl.root), "S"], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("invariants: INV5 "), proc.stderr
    assert f["path"] in proc.stderr


def test_inv6_lock_still_held(two):
    fl, ids = two
    fd = os.open(fl.store / "S" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        expect_failure(invariants(fl), 6)
    finally:
        os.close(fd)
    assert invariants(fl).rc == 0
