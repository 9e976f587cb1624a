"""Helpers for the FUSE tests: mounting flowloom-backupfs and always
tearing the mount down (fusermount3 -u, then -uz, then SIGTERM/SIGKILL of the
daemon's own PID), a store of sessions and backups made by the real CLI, and
a reader of the archives' seek tables to aim corruption at one frame."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

T0 = 1_800_000_000  # FLOWLOOM_NOW of the first backup (2027-01-15)
# Small frames, so that an archive has many and a corrupted one can be aimed at.
FRAME_SIZE = 65536


def is_mounted(path):
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


def mount_options(path):
    """The mount's options from /proc/self/mountinfo (per-mount and super)."""
    target = os.path.realpath(str(path))
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                sep = fields.index("-")
                return set(fields[5].split(",")) | set(fields[sep + 3].split(",")), fields[sep + 1]
    return None, None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def daemon_pids_for(mnt):
    """PIDs of flowloom-backupfs processes whose argv ends with this exact
    mountpoint (for daemons that went to the background)."""
    want = os.fsencode(str(mnt))
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")[:-1]
        except OSError:
            continue
        if argv and argv[0].endswith(b"flowloom-backupfs") and argv[-1] == want:
            pids.append(int(d))
    return pids


class Mount:
    """One flowloom-backupfs mount. stop() is safe to call many times."""

    def __init__(self, fsbin, store, mnt, options=(), log=None):
        self.fsbin = str(fsbin)
        self.store = pathlib.Path(store)
        self.mnt = pathlib.Path(mnt)
        self.options = list(options)
        self.log = pathlib.Path(log or (str(mnt) + ".log"))
        self.proc = None
        self.pid = None

    def start(self, foreground=True, timeout=30):
        self.mnt.mkdir(parents=True, exist_ok=True)
        argv = [self.fsbin] + (["-f"] if foreground else []) + self.options + [
            str(self.store), str(self.mnt)]
        logf = open(self.log, "wb")
        if foreground:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            self.pid = self.proc.pid
        else:
            r = subprocess.run(argv, stdout=logf, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=timeout)
            pids = daemon_pids_for(self.mnt)
            self.pid = pids[0] if pids else None
            self.bg_rc = r.returncode
            logf.close()
            return self
        logf.close()
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode} before mounting:\n"
                                     + self.log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError("mount not live after %ss" % timeout)
            time.sleep(0.02)
        return self

    def stop(self):
        """Unmounts (-u, then -uz), then ends the daemon by its PID."""
        if is_mounted(self.mnt):
            r = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    rc = self.proc.wait()
        elif self.pid is not None:
            deadline = time.monotonic() + 5
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if pid_alive(self.pid):
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + 5
                while pid_alive(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if pid_alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
        assert not is_mounted(self.mnt), f"{self.mnt} still mounted after teardown"
        return rc

    def path(self, *parts):
        return self.mnt.joinpath(*parts)


class Store:
    """A FlowLoom root with sessions and their backups, made by the CLI.
    snapshots[(sid, bid)] is a cp -a copy of the session as the backup saw it."""

    def __init__(self, fl, tmp):
        self.fl = fl
        self.tmp = pathlib.Path(tmp)
        self.backups = {}    # sid -> [backup json, ...] in order
        self.snapshots = {}  # (sid, bid) -> path of the source copy (full backups)
        self.now = T0

    @property
    def store(self):
        return self.fl.store

    def backup(self, sid, kind, snapshot=True):
        self.now += 60
        res = self.fl.backup(kind, sid=sid, now=self.now)
        self.backups.setdefault(sid, []).append(res)
        if snapshot:
            dst = self.tmp / "snap" / sid / res["id"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(self.fl.sessions / sid), str(dst)], check=True)
            self.snapshots[(sid, res["id"])] = dst
        return res["id"]

    def ids(self, sid, kind=None):
        return [b["id"] for b in self.backups.get(sid, [])
                if kind is None or b["type"] == kind]

    def manifest(self, sid, bid):
        return self.fl.manifest(sid, bid)

    def remove(self, sid, bid):
        """Removes one backup while mounted: the CLI's cleanup when retention
        would pick it (the older of two full backups, with keep_full 1),
        else the same steps by hand (index first, then rename aside and
        delete), as any other tool working on the store would."""
        if bid == self.ids(sid, "full")[0] and len(self.ids(sid, "full")) == 2:
            r = self.fl.run("cleanup", "--session", sid, "--keep-full", "1",
                            env={"FLOWLOOM_NOW": str(self.now)})
            assert r.rc == 0, r
            assert not (self.store / sid / bid).exists(), r
            return
        sdir = self.store / sid
        idx = json.loads((sdir / "index.json").read_bytes())
        idx["backups"] = [b for b in idx["backups"] if b["id"] != bid]
        tmp = sdir / ".tmp-index-test"
        tmp.write_text(json.dumps(idx, indent=2) + "\n")
        os.rename(tmp, sdir / "index.json")
        trash = sdir / (".trash-" + bid)
        os.rename(sdir / bid, trash)
        shutil.rmtree(trash)


def age_dirs(sdir, base_ns=1_700_000_000_000_000_000):
    """Gives every directory of the session a distinct mtime in the past
    (with nanoseconds). Copies made in the same second as a directory's
    mtime would otherwise be ambiguous: rsync skips setting a directory's
    time when the seconds already agree."""
    dirs = sorted(p for p in pathlib.Path(sdir).rglob("*") if p.is_dir() and not p.is_symlink())
    for i, d in enumerate(dirs):
        t = base_ns + i * 1_000_000_007
        os.utime(d, ns=(t, t))


def modify_session(sdir, step):
    sdir = pathlib.Path(sdir)
    (sdir / "state.json").write_text(json.dumps({"step": step, "status": "running"}) + "\n")
    (sdir / "state" / "plan.json").write_text(json.dumps({"todo": ["b"], "done": ["a"] * step}))
    (sdir / "state" / f"new-{step}.json").write_text(json.dumps({"n": step}))
    with open(sdir / "logs" / "run.log", "a") as f:
        f.write(f"step {step} done\n" * 100)
    age_dirs(sdir, 1_700_000_000_000_000_000 + step * 100_000_000_000)


def read_seek_table(archive):
    """(c_offset, c_size, d_offset, d_size) of every frame, from the zstd
    seekable format's seek table at the end of the archive."""
    data = pathlib.Path(archive).read_bytes()
    footer = data[-9:]
    n = int.from_bytes(footer[0:4], "little")
    desc = footer[4]
    assert int.from_bytes(footer[5:9], "little") == 0x8F92EAB1
    esize = 12 if desc & 0x80 else 8
    table_start = len(data) - 9 - n * esize
    frames = []
    c_off = d_off = 0
    for i in range(n):
        e = data[table_start + i * esize: table_start + (i + 1) * esize]
        c = int.from_bytes(e[0:4], "little")
        d = int.from_bytes(e[4:8], "little")
        frames.append((c_off, c, d_off, d))
        c_off += c
        d_off += d
    return frames


def frames_of(frames, offset, size):
    """Indexes of the frames holding [offset, offset+size) of the tar stream."""
    end = offset + max(size, 1)
    return {i for i, (_, _, d, ds) in enumerate(frames) if d < end and offset < d + ds}
