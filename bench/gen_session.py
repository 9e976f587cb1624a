#!/usr/bin/env python3
"""Writes a generated FlowLoom session of about SIZE_MIB MiB into SESSION_DIR
for the benchmarks: half text logs (compress well), a quarter repetitive
binary artifacts (compress very well), a quarter random blobs (do not
compress), plus metadata.json. Deterministic except for the random blobs.

usage: gen_session.py SESSION_DIR SIZE_MIB
"""
import os
import random
import sys

sess, mib = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(sess, "logs"), exist_ok=True)
os.makedirs(os.path.join(sess, "artifacts"), exist_ok=True)
rnd = random.Random(42)
words = [("w%d" % i) for i in range(5000)]


def text(n):
    out, size = [], 0
    while size < n:
        line = "%d INFO %s\n" % (rnd.randrange(10**9), " ".join(rnd.choice(words) for _ in range(12)))
        out.append(line)
        size += len(line)
    return "".join(out)[:n]


per = 8 * 1024 * 1024
for i in range(max(1, mib // 2 * 1024 * 1024 // per)):
    with open(os.path.join(sess, "logs", "run%03d.log" % i), "w") as f:
        f.write(text(per))
for i in range(max(1, mib // 4)):
    block = bytes(rnd.randrange(16) for _ in range(4096)) * 256
    with open(os.path.join(sess, "artifacts", "model%03d.bin" % i), "wb") as f:
        f.write(block)
for i in range(max(1, mib // 4)):
    with open(os.path.join(sess, "artifacts", "blob%03d.bin" % i), "wb") as f:
        f.write(os.urandom(1024 * 1024))
with open(os.path.join(sess, "metadata.json"), "w") as f:
    f.write('{"id": "bench"}\n')
