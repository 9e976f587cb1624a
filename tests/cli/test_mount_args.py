"""`mount` and `umount` refuse a bad mountpoint before anything runs (issue
9, item 3 and the "not mounted" half of item 2): the checks happen before
flowloom-backupfs or fusermount3 is started, so none of these needs FUSE or
root. The cases that need a real mount are tests/fuse/test_mount_checks.py."""
import os

from fbhelpers import tree_snapshot


def mount_points():
    """Every mount point in /proc/self/mountinfo, unescaped."""
    out = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ")[4]
            for esc, ch in ((b"\\040", b" "), (b"\\011", b"\t"), (b"\\012", b"\n"),
                            (b"\\134", b"\\")):
                mp = mp.replace(esc, ch)
            out.append(os.fsdecode(mp))
    return out


def test_umount_of_a_plain_directory_says_not_mounted(fl1, tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "keep").write_text("x")
    r = fl1.run("umount", d)
    assert r.rc == 3, r
    assert r.err == f"flowloom-backup: {d}: not mounted\n", r
    assert r.out == ""
    assert (d / "keep").read_text() == "x"
    # relative, from the root, and with --lazy: the same answer
    r = fl1.run("umount", "--lazy", os.path.relpath(d, fl1.root))
    assert r.rc == 3, r
    assert r.err == f"flowloom-backup: {os.path.relpath(d, fl1.root)}: not mounted\n", r


def test_umount_of_a_missing_path_says_not_mounted(fl1, tmp_path):
    r = fl1.run("umount", tmp_path / "nope")
    assert r.rc == 3, r
    assert r.err == f"flowloom-backup: {tmp_path / 'nope'}: not mounted (it does not exist)\n", r


def test_mount_on_a_missing_directory(fl1, tmp_path):
    """One line that names the path; no "bad options (see --help)"."""
    missing = tmp_path / "nope"
    for args in ([missing], ["-f", missing], ["-o", "cache_size=8", missing]):
        r = fl1.run("mount", *args)
        assert r.rc == 2, (args, r)
        assert r.err == f"flowloom-backup: mountpoint {missing} does not exist\n", (args, r)
        assert not missing.exists()
    assert str(missing) not in mount_points()


def test_mount_on_the_sessions_state_file_is_refused(fl1):
    """The user's steps: `mount .flowloom/sessions/<id>/state.json` from the
    root. Refused, the file untouched, nothing mounted, the next backup
    works."""
    rel = ".flowloom/sessions/S1/state.json"
    target = fl1.root / rel
    before = tree_snapshot(fl1.sessions)
    for args in ([rel], ["-f", rel], [target]):
        r = fl1.run("mount", *args)
        assert r.rc == 2, (args, r)
        assert r.err == (f"flowloom-backup: mountpoint {args[-1]} is not a directory "
                         "(it is a regular file)\n"), (args, r)
    assert tree_snapshot(fl1.sessions) == before
    assert not fl1.store.exists()  # a refused mount creates no store either
    assert str(target) not in mount_points()
    assert target.read_bytes().startswith(b'{"step": 17')
    r = fl1.run("backup", "full")
    assert r.rc == 0, r


def test_mount_below_a_regular_file_is_refused(fl1):
    rel = ".flowloom/sessions/S1/state.json/x"
    r = fl1.run("mount", rel)
    assert r.rc == 2, r
    assert r.err == (f"flowloom-backup: mountpoint {rel} does not exist "
                     "(a component of its path is not a directory)\n"), r


def test_mount_checks_the_root_first(fl, tmp_path):
    """No .flowloom here: the root error (exit 3), as for every command."""
    r = fl.run("mount", tmp_path / "nope", cwd=tmp_path)
    assert r.rc == 3, r
    assert "mountpoint" not in r.err
