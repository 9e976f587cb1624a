"""A12, A17, A18: session ids that try to leave the store or look like
options touch no file at all; planted symlinks (lock, leftovers, a fake
backup) are never followed; the store is private whatever the umask."""
import os
import re
import stat
import subprocess

import pytest

from fbhelpers import tree_snapshot
from relhelpers import assert_invariants, leftovers, listed, small_session, write_config

LOADER_PATHS = re.compile(r'^"(/etc/ld\.so\.(cache|preload)|/lib/|/lib64/|/usr/lib/)')


@pytest.mark.parametrize("bad", ["../../etc", "-rf", "..", "a/../../b", "--help=x"])
def test_a12_traversal_or_option_session_id_touches_no_file(fl, tmp_path, need_strace, bad):
    small_session(fl)
    before = tree_snapshot(fl.root)
    log = tmp_path / "strace.log"
    for args in (["backup", "--session", bad, "full"], ["backup", f"--session={bad}"],
                 ["verify", "--session", bad], ["list", "--session", bad]):
        r = fl.run(*args, prefix=["strace", "-f", "-qq", "-o", str(log),
                                  "-e", "trace=%file,openat,mkdir,mkdirat"])
        assert r.rc == 2, (args, r)
        assert "session id" in r.err, r
        calls = [ln.split(" ", 1)[1].strip() for ln in log.read_text().splitlines()]
        for call in calls:
            if call.startswith("execve("):
                continue
            name = call.partition("(")[0]
            assert not name.startswith(("mkdir", "creat", "rename", "unlink", "link",
                                        "symlink")), (args, call)
            assert "O_CREAT" not in call and "O_WRONLY" not in call and "O_RDWR" not in call, \
                (args, call)
            # a path is named only by the dynamic loader (fd-based calls name "")
            quoted = re.search(r'"([^"]*)"', call)
            if quoted and quoted.group(1):
                assert LOADER_PATHS.match(quoted.group(0)), (args, call)
    assert tree_snapshot(fl.root) == before
    assert not fl.store.exists()


@pytest.fixture
def one_full(fl):
    write_config(fl)
    small_session(fl)
    return fl, [fl.backup("full", sid="S")["id"]]


def file_state(path):
    st = os.lstat(path)
    return (path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_ino)


def test_a17_lock_symlink_is_refused_and_target_untouched(one_full, tmp_path):
    fl, prev = one_full
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    victim_before = file_state(victim)
    lock = fl.store / "S" / ".lock"
    lock.unlink()
    os.symlink(victim, lock)
    r = fl.run("backup", "--session", "S", "full")
    assert r.rc == 5, r
    assert ".lock" in r.err and "symlink" in r.err, r
    assert file_state(victim) == victim_before
    assert os.path.islink(lock)
    assert listed(fl) == prev and leftovers(fl) == []
    # a dangling one, to a name that does not exist yet: never created
    lock.unlink()
    os.symlink(tmp_path / "would-be-created", lock)
    r = fl.run("backup", "--session", "S", "full")
    assert r.rc == 5, r
    assert not (tmp_path / "would-be-created").exists()
    lock.unlink()
    assert fl.run("backup", "--session", "S", "full", "-q").rc == 0
    assert_invariants(fl)


def test_a17_planted_leftover_and_backup_symlinks_are_never_followed(one_full, tmp_path):
    fl, prev = one_full
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "keep.txt").write_text("keep me\n")
    (outside / "sub" / "deep.txt").write_text("me too\n")
    (outside / "manifest.json").write_bytes(
        (fl.store / "S" / prev[0] / "manifest.json").read_bytes())
    victim = tmp_path / "victim.json"
    victim.write_text("{}\n")
    outside_before = tree_snapshot(outside)
    victim_before = file_state(victim)
    sd = fl.store / "S"
    os.symlink(outside, sd / ".tmp-00000000deadbeef")
    os.symlink(outside, sd / f".trash-{prev[0]}-deadbeef")
    os.symlink(victim, sd / ".tmp-index.json-00000000deadbeef")
    fake = prev[0][:-6] + "beef00"
    os.symlink(outside, sd / fake)
    # a reader never shows the symlinked "backup"
    assert listed(fl) == prev
    r = fl.run("backup", "--session", "S", "full")
    assert r.rc == 0, r
    assert tree_snapshot(outside) == outside_before
    assert file_state(victim) == victim_before
    assert leftovers(fl) == []
    ids = listed(fl)
    assert fake not in ids and len(ids) == 2
    assert os.path.islink(sd / fake)
    os.unlink(sd / fake)
    assert_invariants(fl)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_a18_store_is_private_whatever_the_umask(fl, umask):
    write_config(fl)
    small_session(fl)

    def run(*args):
        proc = subprocess.run([str(fl.bin), *args], cwd=str(fl.root), env=fl.env(),
                              capture_output=True, preexec_fn=lambda: os.umask(umask),
                              timeout=60)
        assert proc.returncode == 0, proc
    run("backup", "--session", "S", "full", "-q")
    run("backup", "--session", "S", "incremental", "-q")
    run("list", "--session", "S")  # a reader that could write an index back
    wrong = []
    for dirpath, dirnames, filenames in os.walk(fl.store):
        for name in dirnames:
            mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, name)).st_mode)
            if mode != 0o700:
                wrong.append((os.path.join(dirpath, name), oct(mode)))
        for name in filenames:
            mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, name)).st_mode)
            if mode != 0o600:
                wrong.append((os.path.join(dirpath, name), oct(mode)))
    top = stat.S_IMODE(os.lstat(fl.store).st_mode)
    assert top == 0o700, oct(top)
    assert wrong == []
    names = {n for _, _, files in os.walk(fl.store) for n in files}
    assert {".lock", "index.json", "manifest.json", "archive.tar.zst"} <= names
    assert_invariants(fl)
