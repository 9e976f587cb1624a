"""One file system (SPEC "Backup", issue 9 point 4): another file system
mounted inside a session (a tmpfs, a bind mount of the same file system) is
neither entered nor stored by a backup, with one warning each, is not listed
by `diff --live`, and makes `recover` into the session directory refuse
before it touches anything: a recover swaps the whole directory, which would
carry the mount into the old tree and delete what the mount holds. Root only
(mounts); every mount is undone in teardown, pass or fail."""
import json
import os
import subprocess

import pytest

from fbhelpers import tree_snapshot

NOW = 1_790_000_000
WARNING = "warning: skipped {}: another filesystem is mounted there"


def is_mounted(path):
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


@pytest.fixture
def mounts(need_root):
    """Factory: mounts(kind, target, source=None) mounts a tmpfs or a bind
    mount; everything mounted is unmounted after the test (lazily if busy)."""
    made = []

    def mount(kind, target, source=None):
        os.makedirs(target, exist_ok=True)
        argv = (["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", target] if kind == "tmpfs"
                else ["mount", "--bind", str(source), target])
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount here: {r.stderr.strip()}")
        made.append(target)
        return target

    yield mount
    for target in reversed(made):
        if is_mounted(target) and subprocess.run(["umount", target]).returncode != 0:
            subprocess.run(["umount", "-l", target])
    assert not any(is_mounted(t) for t in made)


def fill(d, tag):
    os.makedirs(os.path.join(d, "sub"), exist_ok=True)
    with open(os.path.join(d, f"{tag}.txt"), "w") as f:
        f.write(f"{tag} lives on another file system\n")
    with open(os.path.join(d, "sub", "deep.bin"), "wb") as f:
        f.write(os.urandom(4096))


def archive_names(fl, bid):
    """The member names as the real tar reads them."""
    z = subprocess.run(["zstd", "-dc", str(fl.archive("S1", bid))], capture_output=True,
                       check=True)
    t = subprocess.run(["tar", "-t"], input=z.stdout, capture_output=True, check=True)
    return [n.rstrip("/") for n in t.stdout.decode("utf-8", "surrogateescape").splitlines()]


@pytest.fixture
def session_with_mounts(fl1, tmp_path, mounts):
    """S1 with a tmpfs at mnt/ (over a plain directory that a first backup
    stored with old.txt in it), a bind mount of a directory outside at
    bind/, and a tmpfs under a name that needs escaping."""
    sdir = fl1.sessions / "S1"
    (sdir / "mnt").mkdir()
    (sdir / "mnt" / "old.txt").write_text("stored before the mount hid it\n")
    before = fl1.backup("full", now=NOW)["id"]
    outside = tmp_path / "outside"
    fill(str(outside), "bound")
    mounts("tmpfs", str(sdir / "mnt"))
    fill(str(sdir / "mnt"), "tmpfs")
    mounts("bind", str(sdir / "bind"), outside)
    odd = os.path.join(str(sdir), "odd\nname")
    mounts("tmpfs", odd)
    fill(odd, "odd")
    return fl1, before


MOUNTS = ("mnt", "bind", "odd\nname")
SHOWN = ("mnt", "bind", "odd\\nname")


def under_a_mount(path):
    return any(path == m or path.startswith(m + "/") for m in MOUNTS)


def test_backup_full_skips_each_mount_with_one_warning(session_with_mounts):
    fl, before = session_with_mounts
    r = fl.run("backup", "S1", "full", "--json", env={"FLOWLOOM_NOW": str(NOW + 60)})
    assert r.rc == 0, r
    out = r.json()
    for shown in SHOWN:
        assert r.err.count(WARNING.format(shown)) == 1, r
    assert out["skipped_entries"] == 3
    paths = [e["path"] for e in fl.manifest("S1", out["id"])["entries"]]
    assert not [p for p in paths if under_a_mount(p)], paths
    assert not [n for n in archive_names(fl, out["id"]) if under_a_mount(n)]
    # exactly what the session holds without its mounts: the first backup
    # less the directory the tmpfs now hides
    old = [e["path"] for e in fl.manifest("S1", before)["entries"]]
    assert sorted(paths) == sorted(p for p in old if not under_a_mount(p))
    assert fl.run("verify", "S1", out["id"]).rc == 0


def test_diff_live_lists_nothing_under_a_mount(session_with_mounts):
    fl, before = session_with_mounts
    after = fl.backup("full", now=NOW + 60)["id"]
    r = fl.run("diff", "S1", after, "--live", "--json")
    assert r.rc == 0, r
    assert r.json()["items"] == []
    for shown in SHOWN:
        assert r.err.count(WARNING.format(shown)) == 1, r
    # The first backup holds mnt/old.txt, now hidden by the tmpfs: not
    # looked at, so not "removed" either; nothing of the mounts is "added".
    r = fl.run("diff", "S1", before, "--live", "--json")
    assert r.rc == 0, r
    assert [i["path"] for i in r.json()["items"] if under_a_mount(i["path"])] == []
    human = fl.run("diff", "S1", before, "--live")
    assert "mnt" not in human.out and "bound" not in human.out, human


@pytest.mark.parametrize("dry_run", [False, True])
def test_recover_into_the_session_refuses_and_touches_nothing(session_with_mounts, dry_run):
    fl, before = session_with_mounts
    sdir = fl.sessions / "S1"
    session_before = tree_snapshot(sdir)
    store_before = tree_snapshot(fl.store)
    listing = sorted(os.listdir(fl.sessions))
    args = ["recover", "S1", before] + (["--dry-run"] if dry_run else [])
    r = fl.run(*args)
    assert r.rc == 2, r
    assert "another filesystem is mounted inside the session directory" in r.err, r
    assert "mnt" in r.err and "unmount it first, or recover with --target DIR" in r.err, r
    for m in MOUNTS:
        assert is_mounted(sdir / m), m
    assert tree_snapshot(sdir) == session_before  # the mounts' contents included
    assert tree_snapshot(fl.store) == store_before  # no safety backup either
    assert sorted(os.listdir(fl.sessions)) == listing  # no staging dir left


def test_recover_with_target_is_unaffected(session_with_mounts, tmp_path):
    fl, before = session_with_mounts
    after = fl.backup("full", now=NOW + 60)["id"]
    r = fl.run("recover", "S1", after, "--target", tmp_path / "out")
    assert r.rc == 0, r
    names = sorted(os.listdir(tmp_path / "out"))
    assert not [n for n in names if under_a_mount(n)], names
    assert "metadata.json" in names


def test_the_session_directory_itself_on_a_mount(fl1, mounts):
    """A session directory that is a mount point is backed up (its own file
    system is the session's), but recover cannot swap it: refused."""
    sdir = fl1.sessions / "S1"
    content = tree_snapshot(sdir)
    tmp_copy = fl1.root / "copy"
    subprocess.run(["cp", "-a", str(sdir), str(tmp_copy)], check=True)
    mounts("tmpfs", str(sdir))
    subprocess.run(["cp", "-a", str(tmp_copy) + "/.", str(sdir)], check=True)
    assert tree_snapshot(sdir) == content
    bid = fl1.backup("full", now=NOW)["id"]
    assert len(fl1.manifest("S1", bid)["entries"]) > 5
    r = fl1.run("recover", "S1", bid)
    assert r.rc == 2, r
    assert "is a mount point" in r.err and "--target" in r.err, r
    assert is_mounted(sdir) and tree_snapshot(sdir) == content


def test_a_leftover_with_a_mount_inside_is_not_emptied(fl1, mounts):
    """The removal of leftovers never enters another file system: a mount
    under a .tmp-* dir stays whole and the removal says why it stopped."""
    fl1.backup("full", now=NOW)
    leftover = fl1.store / "S1" / ".tmp-0123456789abcdef"
    m = str(leftover / "m")
    mounts("tmpfs", m)
    fill(m, "precious")
    precious = tree_snapshot(m)
    r = fl1.run("cleanup", "S1")
    assert r.rc != 0, r
    assert "another filesystem is mounted there; nothing inside it was touched" in r.err, r
    assert is_mounted(m) and tree_snapshot(m) == precious
    subprocess.run(["umount", m], check=True)
    r = fl1.run("cleanup", "S1")
    assert r.rc == 0, r
    assert not leftover.exists()
    assert json.loads((fl1.store / "S1" / "index.json").read_text())["backups"]
