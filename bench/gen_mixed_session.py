#!/usr/bin/env python3
"""Writes a FlowLoom-like session of about SIZE_MIB MiB into SESSION_DIR for
bench/run.sh (issue 11), fully deterministic (one seeded generator, fixed
mtimes), so two runs give byte-identical trees:

- metadata.json and state.json at the top;
- 2,000 small files: 1,200 JSON artifacts in artifacts/steps/sNN/, 400 JSON
  checkpoints in checkpoints/ and 400 markdown notes in notes/, 100 B to
  4 KiB each (about 4 MiB in all);
- three logs in logs/ (45% of the rest, split 50/30/20): timestamped lines
  from a few hundred message shapes, which compress about 4:1;
- three binaries in artifacts/ (55% of the rest, split 60/25/15): 1 MiB
  segments, each either random bytes (40%, do not compress), a repeated
  4 KiB pattern (35%, compress very well) or zeros (25%).

2,008 files in all; artifacts/model.bin is the largest. The "random" bytes
come from random.Random(seed).randbytes, not the OS, so they are the same on
every run.

usage: gen_mixed_session.py SESSION_DIR SIZE_MIB
"""
import os
import random
import sys

MIB = 1024 * 1024
SEED = 2008
MTIME = 1_796_083_200  # 2026-12-01T00:00:00Z, set on every file and directory


def small_files(rnd):
    """The 2,000 small files: (relative path, bytes)."""
    words = ["w%d" % i for i in range(3000)]
    tools = ["read_file", "write_file", "bash", "grep", "edit", "search", "test", "build"]

    def prose(n):
        out, size = [], 0
        while size < n:
            w = rnd.choice(words)
            out.append(w)
            size += len(w) + 1
        return " ".join(out)[:n]

    files = []
    for i in range(1200):
        size = rnd.randint(100, 4096)
        head = '{"id":%d,"tool":"%s","status":"%s","duration_ms":%d,"output":"' % (
            i, rnd.choice(tools), rnd.choice(["ok", "ok", "ok", "error"]), rnd.randrange(5000))
        body = prose(max(0, size - len(head) - 3))
        files.append(("artifacts/steps/s%02d/step-%04d.json" % (i % 20, i),
                      (head + body + '"}\n').encode()))
    for i in range(400):
        size = rnd.randint(100, 4096)
        head = '{"checkpoint":%d,"step":%d,"summary":"' % (i, i * 3)
        body = prose(max(0, size - len(head) - 3))
        files.append(("checkpoints/ckpt-%04d.json" % i, (head + body + '"}\n').encode()))
    for i in range(400):
        size = rnd.randint(100, 4096)
        head = "# Note %d\n\n## %s\n\n" % (i, prose(30))
        body = prose(max(0, size - len(head) - 1))
        files.append(("notes/note-%04d.md" % i, (head + body + "\n").encode()))
    return files


def log_text(rnd, n):
    """n bytes of log lines."""
    levels = ["INFO"] * 8 + ["DEBUG"] * 3 + ["WARN", "ERROR"]
    comps = ["agent", "tool.bash", "tool.edit", "planner", "memory", "session", "llm", "fs"]
    verbs = ["started", "finished", "called", "retrying", "cached", "loaded", "wrote", "read"]
    nouns = ["request", "step", "artifact", "checkpoint", "file", "chunk", "prompt", "reply"]
    shapes = []
    for _ in range(300):
        shapes.append("%s %s id=%%d bytes=%%d path=%s/%%d.json took %%dms\n" % (
            rnd.choice(verbs), rnd.choice(nouns), rnd.choice(nouns)))
    out, size, t = [], 0, 0
    bits = rnd.getrandbits
    while size < n:
        t += bits(8)
        line = "2026-12-07T%02d:%02d:%02d.%03dZ %s %s: " % (
            t // 3600000 % 24, t // 60000 % 60, t // 1000 % 60, t % 1000,
            levels[bits(16) % len(levels)], comps[bits(16) % len(comps)])
        line += shapes[bits(16) % 300] % (bits(20), bits(14), bits(10), bits(12))
        out.append(line)
        size += len(line)
    return "".join(out)[:n].encode()


def write_binary(rnd, path, n):
    """n bytes of 1 MiB segments: random, a repeated 4 KiB pattern, or zeros."""
    with open(path, "wb") as f:
        left = n
        while left > 0:
            seg = min(MIB, left)
            kind = rnd.random()
            if kind < 0.40:
                f.write(rnd.randbytes(seg))
            elif kind < 0.75:
                pattern = bytes(rnd.getrandbits(4) for _ in range(4096))
                f.write((pattern * (MIB // 4096))[:seg])
            else:
                f.write(bytes(seg))
            left -= seg


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_mixed_session.py SESSION_DIR SIZE_MIB")
    sess, mib = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(SEED)
    smalls = small_files(rnd)
    small_total = sum(len(b) for _, b in smalls)
    rest = max(3 * MIB, mib * MIB - small_total - 1024)
    logs = int(rest * 0.45)
    bins = rest - logs

    def put(rel, data):
        path = os.path.join(sess, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    put("metadata.json", b'{"id":"bench","name":"mixed benchmark session","agent":"flowloom"}\n')
    put("state.json", b'{"step":1200,"status":"active","checkpoint":399}\n')
    for rel, data in smalls:
        put(rel, data)
    for name, share in (("agent.log", 0.5), ("tool-output.log", 0.3), ("server.log", 0.2)):
        put("logs/" + name, log_text(rnd, int(logs * share)))
    for name, share in (("model.bin", 0.6), ("embeddings.bin", 0.25), ("cache.bin", 0.15)):
        os.makedirs(os.path.join(sess, "artifacts"), exist_ok=True)
        write_binary(rnd, os.path.join(sess, "artifacts", name), int(bins * share))
    for d, dirs, files in os.walk(sess, topdown=False):
        for name in files:
            os.utime(os.path.join(d, name), (MTIME, MTIME))
        os.utime(d, (MTIME, MTIME))


main()
