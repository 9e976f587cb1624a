"""F22 and A16 on real mounts, with the daemon run under strace (started
here, -f foreground; always torn down: fusermount3 -u, then -uz, then the
daemon's own PID). F22: a reader interrupted by SIGINT in the middle of a
slow read (strace delays the daemon's preads of that one archive) exits,
and the daemon keeps answering everybody else. A16: a stored symlink to
/etc/shadow is only ever answered with readlink; the kernel follows it with
the caller's credentials (nobody: EACCES), and the daemon opens nothing
outside the store."""
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from fbhelpers import REPO, sha256_file
from relhelpers import strace_skip_reason

sys.path.insert(0, str(REPO / "tests" / "fuse"))
from fusehelpers import is_mounted, mount_options, pid_alive  # noqa: E402

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
FUSECTL = pathlib.Path("/sys/fs/fuse/connections")


def skip_reason():
    if os.geteuid() != 0:
        return "FUSE tests run as root (mounts and allow_other without fuse.conf)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"/dev/fuse cannot be opened: {e}"
    for tool in ("fusermount3", "mountpoint", "setpriv"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return strace_skip_reason()


SKIP = skip_reason()


@pytest.fixture(autouse=True)
def _need_fuse_and_strace():
    if SKIP:
        pytest.skip(SKIP)


class TracedDaemon:
    """flowloom-backupfs -f under `strace -f --seccomp-bpf`. stop() unmounts
    (-u, then -uz), waits for the daemon, then ends it by its PID (SIGTERM,
    SIGKILL) and strace after it; safe to call many times."""

    def __init__(self, fsbin, store, mnt, log, strace_args=(), options=()):
        self.argv = ["strace", "-f", "-qq", "--seccomp-bpf", "-o", str(log), *strace_args,
                     str(fsbin), "-f", *options, str(store), str(mnt)]
        self.mnt = pathlib.Path(mnt)
        self.log = pathlib.Path(log)
        self.proc = None
        self.pid = None  # the daemon's, not strace's
        self.rc = None

    def start(self, timeout=30):
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode} before mounting: "
                                     + self.proc.stdout.read().decode(errors="replace"))
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.mnt} not mounted after {timeout} s")
            time.sleep(0.02)
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
        assert len(kids) == 1, kids
        self.pid = kids[0]
        return self

    def stop(self):
        if is_mounted(self.mnt):
            if subprocess.run(["fusermount3", "-u", str(self.mnt)],
                              capture_output=True).returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)
        if self.proc is not None and self.rc is None:
            try:
                self.rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    if self.pid and pid_alive(self.pid):
                        os.kill(self.pid, sig)
                    try:
                        self.rc = self.proc.wait(timeout=5)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                if self.rc is None:
                    self.proc.kill()
                    self.rc = self.proc.wait()
            self.proc.stdout.close()
        assert not is_mounted(self.mnt), f"{self.mnt} still mounted after teardown"
        return self.rc

    def path(self, *parts):
        return self.mnt.joinpath(*parts)


@pytest.fixture
def daemons(fbfs_bin):
    made = []

    def make(store, mnt, log, strace_args=(), options=()):
        d = TracedDaemon(fbfs_bin, store, mnt, log, strace_args, options)
        made.append(d)
        return d.start()

    yield make
    errors = []
    for d in made:
        try:
            d.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, errors


def run(*cmd, timeout=10, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, timeout=timeout, **kw)


# ---- F22: an interrupted reader ----

class Fusectl:
    """The fusectl file system, mounted for the test if it is not already
    (and then unmounted again)."""

    def __init__(self):
        self.mounted_here = False

    def __enter__(self):
        if FUSECTL.is_dir() and not is_mounted(FUSECTL):
            self.mounted_here = subprocess.run(
                ["mount", "-t", "fusectl", "fusectl", str(FUSECTL)],
                capture_output=True).returncode == 0
        return self

    def waiting(self, mnt):
        dev = os.stat(mnt).st_dev
        p = FUSECTL / str(os.minor(dev) if os.major(dev) == 0 else dev) / "waiting"
        return int(p.read_text()) if p.exists() else None

    def __exit__(self, *exc):
        if self.mounted_here:
            subprocess.run(["umount", str(FUSECTL)], capture_output=True)


def bytes_read(pid):
    with open(f"/proc/{pid}/io") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("rchar:"))


READ_NR = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine, "0")


def in_syscall(pid):
    with open(f"/proc/{pid}/syscall") as f:
        return f.read().split()[0]


def test_f22_reader_interrupted_mid_read_and_the_daemon_carries_on(fl, shared_tmp, daemons):
    (fl.flowloom / "backup.json").write_text(json.dumps(
        {"compression": {"level": 1, "frame_size": 262144, "threads": 1}}))
    rng = random.Random(22)
    big_size = 16 << 20
    sdir = fl.sessions / "BIG"
    sdir.mkdir(parents=True)
    (sdir / "big.bin").write_bytes(rng.randbytes(big_size))
    big = fl.backup("full", sid="BIG")["id"]
    other = fl.sessions / "OTHER"
    other.mkdir()
    (other / "state.json").write_text('{"step": 3}\n')
    (other / "notes.txt").write_bytes(rng.randbytes(100_000))
    small = fl.backup("full", sid="OTHER")["id"]
    archive = fl.archive("BIG", big)
    # every pread of the big archive (only that file) waits 0.1 s in the daemon
    d = daemons(fl.store, shared_tmp / "mnt", shared_tmp / "strace.log",
                strace_args=["-P", str(archive), "-e", "trace=pread64",
                             "-e", "inject=pread64:delay_enter=100000"])
    src = d.path("BIG", big, "big.bin")
    with Fusectl() as ctl:
        reader = subprocess.Popen(["cat", str(src)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        try:
            # wait until cat has read some and is blocked in read(2) on the mount
            deadline = time.monotonic() + 20
            while bytes_read(reader.pid) < 256 << 10 or in_syscall(reader.pid) != READ_NR:
                assert reader.poll() is None, "cat finished before it could be interrupted"
                assert time.monotonic() < deadline, "cat never got going"
                time.sleep(0.01)
            got = bytes_read(reader.pid)
            assert got < big_size, got
            os.kill(reader.pid, signal.SIGINT)
            t = time.monotonic()
            rc = reader.wait(timeout=10)
            print(f"\nF22: cat interrupted after {got} of {big_size} bytes, exited "
                  f"{rc} in {time.monotonic() - t:.2f} s")
            assert rc == -signal.SIGINT
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        # the daemon answers other requests at once
        t = time.monotonic()
        st = os.stat(d.path("OTHER", small, "notes.txt"))
        assert st.st_size == 100_000
        r = run("sha256sum", d.path("OTHER", small, "notes.txt"), timeout=5)
        assert r.returncode == 0
        assert r.stdout.split()[0].decode() == sha256_file(other / "notes.txt")
        took = time.monotonic() - t
        assert took < 5, took
        assert sorted(os.listdir(d.path())) == ["BIG", "OTHER"]
        # no request left waiting for an answer (fusectl, when there is one)
        waiting = ctl.waiting(d.mnt)
        if waiting is not None:
            deadline = time.monotonic() + 5
            while waiting and time.monotonic() < deadline:
                time.sleep(0.05)
                waiting = ctl.waiting(d.mnt)
            assert waiting == 0, waiting
        print(f"F22: stat + sha256sum of another backup's file took {took:.3f} s; "
              f"fusectl waiting: {waiting}")
        # the interrupted file itself still reads correctly (its first MiB,
        # past where cat was stopped; all of it would take 6 s of delays)
        with open(src, "rb") as f:
            assert f.read(1 << 20) == (sdir / "big.bin").read_bytes()[:1 << 20]
    assert pid_alive(d.pid) and is_mounted(d.mnt)
    assert d.stop() == 0


# ---- A16: a stored symlink to /etc/shadow ----

# "<pid> openat(<dirfd><path>, "<name>", ...": strace pads the pid column
OPENAT = re.compile(r'^(\d+)\s+(openat2?|open)\((?:(AT_FDCWD|\d+)<([^>]*)>, )?"((?:[^"\\]|\\.)*)"')
# what the daemon may open besides the store: the loader, /dev/fuse and
# /dev/null at start, glibc's time zone (for timestamps)
ALLOWED = ("/etc/ld.so.cache", "/lib/", "/lib64/", "/usr/lib/", "/dev/fuse", "/dev/null",
           "/etc/localtime", "/usr/share/zoneinfo/")


LATE_ALLOWED = ("/etc/localtime", "/usr/share/zoneinfo/", "/etc/ld.so.cache", "/lib/",
                "/lib64/", "/usr/lib/")


def opened_paths(log):
    """(pid, resolved path) of every open* call in the strace -y log."""
    out = []
    for ln in pathlib.Path(log).read_text(errors="replace").splitlines():
        m = OPENAT.match(ln)
        if not m:
            continue
        pid, _, _, dirpath, name = m.groups()
        path = name if name.startswith("/") or not dirpath else dirpath.rstrip("/") + "/" + name
        out.append((pid, os.path.normpath(path)))
    return out


def test_a16_symlink_to_etc_shadow_is_never_opened_by_the_daemon(fl, shared_tmp, daemons):
    sdir = fl.sessions / "S"
    sdir.mkdir(parents=True)
    (sdir / "metadata.json").write_text("{}\n")
    (sdir / "readable.txt").write_text("anyone may read this\n")
    os.chmod(sdir / "readable.txt", 0o644)
    os.symlink("/etc/shadow", sdir / "l")
    os.symlink("../../../../../../../../etc/shadow", sdir / "up")
    bid = fl.backup("full", sid="S")["id"]
    entries = {e["path"]: e for e in fl.manifest("S", bid)["entries"]}
    assert entries["l"]["type"] == "symlink" and entries["l"]["target"] == "/etc/shadow"
    # The mount shows the store's own modes (0700, root) on its root, session
    # and backup dirs; opened up here so that nobody reaches the link itself
    # and its EACCES comes from the host's /etc/shadow, not from the mount.
    for p in (fl.store, fl.store / "S"):
        os.chmod(p, 0o755)
    store = os.path.realpath(fl.store)
    log = shared_tmp / "strace.log"
    d = daemons(fl.store, shared_tmp / "mnt", log,
                strace_args=["-y", "-e", "trace=open,openat,openat2,execve"],
                options=["-o", "allow_other"])
    opts, _ = mount_options(d.mnt)
    assert {"ro", "nosuid", "nodev", "default_permissions", "allow_other"} <= opts, opts
    at_mount = len(opened_paths(log))
    link, up = d.path("S", bid, "l"), d.path("S", bid, "up")

    # control: nobody reads an ordinary file through the mount
    r = run(*AS_NOBODY, "cat", d.path("S", bid, "readable.txt"))
    assert r.returncode == 0 and r.stdout == b"anyone may read this\n", r
    # readlink answers the stored target, byte for byte
    r = run(*AS_NOBODY, "readlink", link)
    assert r.returncode == 0 and r.stdout == b"/etc/shadow\n", r
    assert os.readlink(up) == "../../../../../../../../etc/shadow"
    # following it is the kernel's walk on the host, with nobody's rights
    for p in (link, up):
        r = run(*AS_NOBODY, "cat", p)
        assert r.returncode != 0 and r.stdout == b"", r
        assert b"Permission denied" in r.stderr or b"No such file" in r.stderr, r
    # as root, the kernel resolves the host's /etc/shadow (not the daemon)
    assert os.stat(link).st_ino == os.stat("/etc/shadow").st_ino

    assert d.stop() == 0
    calls = opened_paths(log)
    daemon_pids = {pid for pid, _ in calls}
    # the log is read right: it shows the daemon opening /dev/fuse, and the
    # manifest and archive of the backup once mounted
    opened = [p for _, p in calls]
    assert "/dev/fuse" in opened[:at_mount], calls
    backup_dir = os.path.join(store, "S", bid)
    assert {os.path.join(backup_dir, "manifest.json"),
            os.path.join(backup_dir, "archive.tar.zst")} <= set(opened[at_mount:]), calls
    # at start it also opens <root>/.flowloom, to check that the store is a
    # <root>/.flowloom/backups directory, and its own mountinfo, to refuse a
    # mountpoint where something is mounted already (before mounting only)
    mountinfo = re.compile(r"/proc/(self|\d+)/mountinfo")
    # and its own manifest cache ($XDG_CACHE_HOME, this test's directory)
    cache = os.path.join(os.environ["XDG_CACHE_HOME"], "flowloom-backup")
    outside = [(pid, p) for i, (pid, p) in enumerate(calls)
               if not (p in (store, os.path.dirname(store)) or p.startswith(store + "/")
                       or p.startswith(ALLOWED) or p == cache or p.startswith(cache + "/")
                       or (i < at_mount and mountinfo.fullmatch(p)))]
    assert not outside, outside
    assert not [p for _, p in calls if os.path.basename(p) == "shadow"], calls
    # after mounting, only the store, its manifest cache, glibc's time zone
    # file and libgcc_s (which glibc loads when a worker thread exits) are
    # opened
    late = [p for _, p in calls[at_mount:]
            if not (p == store or p.startswith(store + "/") or p.startswith(cache + "/"))]
    assert all(p.startswith(LATE_ALLOWED) for p in late), late
    execs = [ln for ln in log.read_text().splitlines() if " execve(" in ln]
    assert len(execs) == 1, execs  # only strace's own start of the daemon
    print(f"\nA16: the daemon ({len(daemon_pids)} threads) made {len(calls)} open calls, "
          f"{len(calls) - at_mount} after mounting; none outside {store}"
          + (f" but {sorted(set(late))}" if late else ""))
