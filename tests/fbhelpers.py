"""Helpers shared by the integration tests (tests/cli, tests/fuse): running
the built programs on FlowLoom trees generated in temporary directories, and
snapshots of trees to prove what changed. The build directory is
$FB_BUILD_DIR, else ./build at the repository root."""
import hashlib
import json
import os
import pathlib
import random
import stat
import subprocess


REPO = pathlib.Path(__file__).resolve().parent.parent


def build_dir():
    env = os.environ.get("FB_BUILD_DIR")
    if env:
        return pathlib.Path(env).resolve()
    return REPO / "build"


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


_M64 = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & _M64


def _round(acc, lane):
    return _rotl((acc + lane * _P2) & _M64, 31) * _P1 & _M64


def xxh64(data, seed=0):
    """XXH64 of data (the manifest cache's checksum, core/base/hash.c): the
    algorithm as xxHash specifies it, checked against xxhsum -H1."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M64, (seed + _P2) & _M64, seed, (seed - _P1) & _M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M64
        for k in range(4):
            h = ((h ^ _round(0, v[k])) * _P1 + _P4) & _M64
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while i + 8 <= n:
        h = (_rotl(h ^ _round(0, int.from_bytes(data[i:i + 8], "little")), 27) * _P1 + _P4) & _M64
        i += 8
    if i + 4 <= n:
        h = (_rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * _P1 & _M64), 23) * _P2 + _P3) & _M64
        i += 4
    while i < n:
        h = _rotl(h ^ (data[i] * _P5 & _M64), 11) * _P1 & _M64
        i += 1
    h = (h ^ (h >> 33)) * _P2 & _M64
    h = (h ^ (h >> 29)) * _P3 & _M64
    return h ^ (h >> 32)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_snapshot(top):
    """Every entry under top (bytes paths): type, mode, size, content hash or
    link target, mtime_ns. Used to prove that nothing changed."""
    top = os.fsencode(str(top))
    snap = {}
    if not os.path.lexists(top):
        return snap
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, top)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                snap[rel] = ("l", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                snap[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                snap[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns,
                             sha256_file(full))
            else:
                snap[rel] = ("o", st.st_mode)
    return snap


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout_bytes = proc.stdout
        self.stderr_bytes = proc.stderr
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.stdout_bytes)

    def __repr__(self):
        return f"<rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def make_realistic_session(sdir, rng, log_bytes=512 * 1024):
    """A FlowLoom session as it looks in use: metadata and state JSON, a
    state/ directory, binary artifacts with a symlink and a hardlink, logs."""
    sdir = pathlib.Path(sdir)
    (sdir / "artifacts" / "models").mkdir(parents=True, exist_ok=True)
    (sdir / "logs").mkdir(exist_ok=True)
    (sdir / "state").mkdir(exist_ok=True)
    (sdir / "metadata.json").write_text(json.dumps(
        {"session_id": sdir.name, "created": "2026-11-30T10:00:00Z",
         "title": "Refactor the parser", "tags": ["parser", "refactor"]}, indent=2) + "\n")
    (sdir / "state.json").write_text(json.dumps(
        {"step": 17, "status": "running", "cursor": {"file": "src/parse.c", "line": 412}}) + "\n")
    (sdir / "state" / "plan.json").write_text(json.dumps({"todo": ["a", "b"], "done": []}))
    (sdir / "state" / "notes.md").write_text("# Notes\n\n- check the lexer\n")
    (sdir / "artifacts" / "models" / "weights.bin").write_bytes(rng.randbytes(300 * 1024))
    (sdir / "artifacts" / "blob.dat").write_bytes(rng.randbytes(70 * 1024) + b"\0" * 50000)
    (sdir / "artifacts" / "empty.bin").write_bytes(b"")
    os.symlink("models/weights.bin", sdir / "artifacts" / "latest-weights")
    os.link(sdir / "artifacts" / "blob.dat", sdir / "artifacts" / "blob-hardlink.dat")
    lines = []
    size = 0
    i = 0
    while size < log_bytes:
        line = f"2026-11-30T10:{i // 60 % 60:02d}:{i % 60:02d}Z step {i} tokens={rng.randrange(10**6)} ok\n"
        lines.append(line)
        size += len(line)
        i += 1
    (sdir / "logs" / "run.log").write_text("".join(lines))
    (sdir / "logs" / "tool-output.txt").write_text("hello\n" * 1000)
    os.chmod(sdir / "artifacts" / "models" / "weights.bin", 0o640)
    os.utime(sdir / "state.json", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    return sdir


class FlowLoom:
    """A FlowLoom root in a temporary directory and the CLI run on it."""

    def __init__(self, root, fb_bin):
        self.root = pathlib.Path(root)
        self.bin = fb_bin
        self.flowloom = self.root / ".flowloom"
        self.sessions = self.flowloom / "sessions"
        self.store = self.flowloom / "backups"
        self.rng = random.Random(1234)
        self.sessions.mkdir(parents=True)

    def env(self, extra=None, traced=False):
        """The environment of a run: no FLOWLOOM_* of the caller's. traced:
        the run is under strace, where LeakSanitizer cannot work (it needs
        ptrace itself and aborts the process at exit), so leak checking is
        turned off for it in a sanitizer build; every other report stays."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")}
        if traced and env.get("ASAN_OPTIONS"):
            env["ASAN_OPTIONS"] += ":detect_leaks=0"
        env["TZ"] = "UTC"
        env["LC_ALL"] = "C.UTF-8"
        if extra:
            for k, v in extra.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = v
        return env

    def run(self, *args, env=None, cwd=None, timeout=120, prefix=None, stdin=None):
        cmd = list(prefix or []) + [str(self.bin)] + [a if isinstance(a, bytes) else str(a)
                                                      for a in args]
        traced = bool(prefix) and os.path.basename(str(prefix[0])) == "strace"
        proc = subprocess.run(cmd, cwd=str(cwd or self.root), env=self.env(env, traced),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=stdin if stdin is not None else subprocess.DEVNULL,
                              timeout=timeout)
        return Result(proc)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.rc == 0, r
        return r

    def session(self, sid="S1", realistic=True, **kw):
        sdir = self.sessions / sid
        sdir.mkdir(parents=True, exist_ok=True)
        if realistic:
            make_realistic_session(sdir, self.rng, **kw)
        return sdir

    def backup_ids(self, sid="S1"):
        d = self.store / sid
        if not d.exists():
            return []
        return sorted(p.name for p in d.iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def index(self, sid="S1"):
        return json.loads((self.store / sid / "index.json").read_bytes())

    def manifest(self, sid, bid):
        return json.loads((self.store / sid / bid / "manifest.json").read_bytes())

    def archive(self, sid, bid):
        return self.store / sid / bid / "archive.tar.zst"

    def backup(self, *args, sid="S1", now=None, env=None):
        extra = dict(env or {})
        if now is not None:
            extra["FLOWLOOM_NOW"] = str(now)
        r = self.run("backup", "--session", sid, "--json", *args, env=extra)
        assert r.rc == 0, r
        return r.json()


