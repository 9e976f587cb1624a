"""`diff --live` and `recover --dry-run` hold the live session directory
against a backup in one way (core/store/live.c), so they agree: a live file
that cannot be read is modified for both, each names it in the same warning,
and neither fails (exit 0)."""
import os
import shutil
import subprocess

import pytest

NOW = 1764558900


def unreadable_prefix():
    """What to run the CLI under so that a mode-000 file cannot be opened:
    nothing for an ordinary user; for root, no DAC override capabilities
    (root then gets EACCES like anyone)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is not installed (util-linux)")
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run(prefix + ["true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr!r}")
    return prefix


def test_unreadable_live_file_is_modified_with_one_warning_in_diff_and_recover(fl1):
    sdir = fl1.sessions / "S1"
    full = fl1.backup("full", now=NOW)["id"]
    rel = "artifacts/models/weights.bin"
    # Same size, another mtime: only the bytes could tell, and they cannot be read.
    os.utime(sdir / rel, ns=(1_600_000_000_000_000_000,) * 2)
    os.chmod(sdir / rel, 0)
    prefix = unreadable_prefix()
    try:
        diff = fl1.run("diff", "--live", "--checksum", full, prefix=prefix)
        rec = fl1.run("recover", "S1", full, "--dry-run", prefix=prefix)
        diff_json = fl1.run("diff", "--live", "--checksum", "--json", full, prefix=prefix)
        rec_json = fl1.run("recover", "S1", full, "--dry-run", "--json", prefix=prefix)
    finally:
        os.chmod(sdir / rel, 0o640)

    warning = f"cannot read {rel} (Permission denied): counted as modified"
    for r in (diff, rec, diff_json, rec_json):
        assert r.rc == 0, r
        assert warning in r.err, r
        assert r.err.count("cannot read") == 1, r
    assert f"modified: {rel} (content,mode,mtime)" in diff.out.splitlines(), diff
    assert f"    modified: {rel}" in rec.out.splitlines(), rec
    # nothing else differs, for either
    assert [l for l in diff.out.splitlines() if ": " in l and l.split(":")[0] in
            ("added", "removed", "modified", "changed")] == [
                f"modified: {rel} (content,mode,mtime)"]
    assert "0 added, 1 modified, 0 removed, 0 changed" in rec.out, rec
    items = diff_json.json()["items"]
    assert [(i["path"], i["kind"]) for i in items] == [(rel, "modified")]
    assert "sha256" not in items[0]["b"]
    changes = rec_json.json()["changes"]
    assert [(c["path"], c["kind"]) for c in changes] == [(rel, "modified")]
    # nothing was changed by either
    assert os.stat(sdir / rel).st_mtime_ns == 1_600_000_000_000_000_000
