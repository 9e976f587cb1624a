#!/usr/bin/env python3
"""Writes the many-small-files session of issue 10 into SESSION_DIR: N JSON
files of 20-200 bytes spread evenly over 100 directories (d000..d099), as
agents leave artifacts and checkpoints. Deterministic (seeded), so two runs
give the same tree.

usage: gen_small_files.py SESSION_DIR N
"""
import os
import random
import sys

sess, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(10)
dirs = [os.path.join(sess, "d%03d" % d) for d in range(100)]
for d in dirs:
    os.makedirs(d, exist_ok=True)
for i in range(n):
    size = rnd.randint(20, 200)
    head = '{"id":%d,"v":"' % i
    pad = max(0, size - len(head) - 2)
    text = head + "".join(rnd.choice("abcdefghij ") for _ in range(pad)) + '"}'
    with open(os.path.join(dirs[i % 100], "f%07d.json" % i), "w") as f:
        f.write(text)
