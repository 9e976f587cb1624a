"""Helpers for the reliability suite: the invariant checker
(tests/lib/invariants.sh), syscall fault injection with strace, and cheap
copies of a prepared FlowLoom root so that every kill point starts from the
same store."""
import json
import os
import pathlib
import re
import shutil
import subprocess

from fbhelpers import REPO, FlowLoom, Result, make_realistic_session

INVARIANTS = REPO / "tests" / "lib" / "invariants.sh"
FLIP_BYTE = REPO / "scripts" / "flip-byte"
FRAME_SIZE = 65536
KILLED = (-9, 137)  # strace re-raises the tracee's SIGKILL on itself (or a shell says 137)
ID_RE = re.compile(r"^\d{8}T\d{6}Z-(full|incr)-[0-9a-f]{6}$")


def strace_skip_reason():
    if not shutil.which("strace"):
        return "strace is not installed"
    proc = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null",
                           "-e", "inject=getppid:error=EPERM", "true"],
                          capture_output=True, timeout=30)
    if proc.returncode != 0:
        return "strace cannot trace here: " + proc.stderr.decode(errors="replace")[:200]
    return None


def invariants(fl, sid="S", corrupt=(), extract=False):
    env = dict(os.environ)
    env["FB_BIN"] = str(fl.bin)
    env["INV_CORRUPT"] = " ".join(corrupt)
    env["INV_EXTRACT"] = "1" if extract else "0"
    proc = subprocess.run(["bash", str(INVARIANTS), str(fl.root), sid], env=env,
                          capture_output=True, timeout=120)
    return Result(proc)


def assert_invariants(fl, sid="S", context="", **kw):
    r = invariants(fl, sid, **kw)
    assert r.rc == 0, f"{context}\n{r.err}"


def listed(fl, sid="S"):
    r = fl.run("list", "--session", sid, "--json")
    assert r.rc == 0, r
    return [x["id"] for x in r.json()]


def leftovers(fl, sid="S"):
    d = fl.store / sid
    if not d.exists():
        return []
    return sorted(n for n in os.listdir(d) if n.startswith((".tmp-", ".trash-")))


def store_files(fl, sid="S"):
    """Every name under the session's store dir but the lock file, with type,
    size and mtime: proves that a failed command left nothing behind."""
    d = fl.store / sid
    out = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, d)
            if rel == ".lock":
                continue
            st = os.lstat(full)
            out[rel] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def index_bytes(fl, sid="S"):
    p = fl.store / sid / "index.json"
    return p.read_bytes() if p.exists() else None


def write_config(fl, **retention):
    cfg = {"compression": {"level": 3, "frame_size": FRAME_SIZE}}
    if retention:
        cfg["retention"] = retention
    (fl.flowloom / "backup.json").write_text(json.dumps(cfg))


def small_session(fl, sid="S"):
    """About 530 KiB: a few 64 KiB frames, every entry type."""
    sdir = fl.sessions / sid
    sdir.mkdir(parents=True)
    make_realistic_session(sdir, fl.rng, log_bytes=64 * 1024)
    return sdir


def clone(fl, dst):
    """A copy of fl's root (hardlinks, modes and mtimes kept) as a new FlowLoom."""
    dst = pathlib.Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(fl.root), str(dst)], check=True)
    c = FlowLoom.__new__(FlowLoom)
    c.root = dst
    c.bin = fl.bin
    c.flowloom = dst / ".flowloom"
    c.sessions = c.flowloom / "sessions"
    c.store = c.flowloom / "backups"
    c.rng = fl.rng
    return c


def strace_prefix(log, trace, inject, extra=()):
    return ["strace", "-f", "-qq", "-y", "-o", str(log), "-e", "trace=" + trace,
            "-e", "inject=" + inject, *extra]


def kill_point(log):
    """The syscall strace was stopped in when the SIGKILL came: the last
    line of the log that is not strace's own '+++ killed' note."""
    try:
        lines = pathlib.Path(log).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "?"
    lines = [ln for ln in lines if "+++" not in ln and "---" not in ln]
    if not lines:
        return "?"
    last = lines[-1]
    if "resumed>" in last:
        # another thread's event split the line: take its "<unfinished ...>" half
        pid = last.split(" ", 1)[0]
        last = next((ln for ln in reversed(lines)
                     if ln.startswith(pid + " ") and "<unfinished" in ln), last)
    # "<pid> syscall(args..." -> drop the pid, shorten the store paths
    line = last.split(" ", 1)[-1].strip()
    return re.sub(r"</[^>]*/\.flowloom/", "<", line)[:160]


def injected(log):
    try:
        return "(INJECTED)" in pathlib.Path(log).read_text(errors="replace")
    except FileNotFoundError:
        return False
