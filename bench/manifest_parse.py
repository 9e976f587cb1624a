#!/usr/bin/env python3
"""Times the strict manifest parser (fb_manifest_parse) on pathological
manifests and prints the parse time and the peak memory of each.

Shapes (valid manifests, so the whole parser runs, except numbers-raw;
compact JSON, so the most entries fit under the 256 MiB cap of
FB_MANIFEST_SIZE_MAX; the issue 7 requirement is at most 1 s per 10 MB):
  deep      a chain of nested directories d/d/d/... as deep as a 4096-byte
            path allows, then files in the deepest directories until SIZE_MIB
            (every path has ~2,000 '/': the fuzzing finding of issue 7)
  deep-bare the same files without any directory entry (ancestors missing,
            which the parser allows: the mount implies them)
  many      ENTRIES small entries in 100 directories (default 600,000)
  wide      unknown keys in the root object until SIZE_MIB (forward
            compatible keys are ignored, but still parsed and checked)
  numbers   one unknown key whose value is an array of 0s (SIZE_MIB), one
            value per 8 bytes: the densest the parser accepts
  strings   the same with empty strings
  arrays    the same with empty arrays
  numbers-raw  the array of 0s written "0,0,0": 2 bytes a value, refused
  tiny      the most entries that fit: short names, all directories

usage: manifest_parse.py [--build DIR] [--keep DIR] [--runs N]
                         [SHAPE[:SIZE_MIB|ENTRIES] ...]
default: deep:21 deep:250 deep-bare:250 many:600000 tiny:250 wide:250
         numbers:250 strings:250 arrays:250 numbers-raw:250

A small C driver is compiled against DIR/core/format/libfbformat.a and
DIR/core/base/libfbbase.a (DIR: the build directory of FB_BUILD_DIR, else
build). It reads the file, then calls
fb_manifest_parse once per run; it reports the best wall time of the
parse, the peak RSS of the process (VmHWM) and that peak minus the RSS
before the first parse (the input text itself is not counted there). A
refused manifest is timed too (the refusal is the point of numbers-raw).
Memory: up to 15 times the largest manifest (strings:250 needs 3.7 GB;
numbers-raw:250 needed about 15 GB before it was refused up front).
Generating the 250 MiB files takes minutes: --keep DIR keeps them (and
reuses those already there).
"""
import os
import shutil
import subprocess
import sys
import tempfile

CAP = 256 * 1024 * 1024
SHA = "ab" * 32
HEAD = ('{"format":1,"backup_id":"20261201T031500Z-full-3fa9c2","seq":1,'
        '"session_id":"session_12345_1640995200_abc123","type":"full",'
        '"created_at":"2025-12-01T03:15:00Z","note":null,"base":null,'
        '"tool_version":"bench","archive":{"size":1,"sha256":"%s",'
        '"frame_size":1048576,"frames":1,"level":3},' % SHA)

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fb_manifest.h"

/* VmRSS or VmHWM (the peak) of this process, in KiB. Not getrusage's
 * ru_maxrss: Linux carries that across exec, so it would report the
 * generator's peak when python forked the driver. */
static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            v = atol(line + strlen(key));
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    int runs = argc > 2 ? atoi(argv[2]) : 1;
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return 2;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
        return 2;
    fclose(f);
    buf[len] = '\0';
    long before = status_kib("VmRSS:");
    double best = 1e99;
    long n = 0;
    for (int r = 0; r < runs; r++) {
        fb_manifest m;
        fb_error err;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int rc = fb_manifest_parse(buf, (size_t)len, "manifest.json", &m, &err);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (rc != 0) {
            fprintf(stderr, "%s\n", err.message);
            n = -1;
        } else {
            n = (long)m.n_entries;
            fb_manifest_fini(&m);
        }
        double t = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        if (t < best)
            best = t;
    }
    long peak = status_kib("VmHWM:");
    printf("%ld %.3f %ld %ld\n", n, best, peak, peak - before);
    return 0;
}
"""


def entry(path, typ, size=0, offset=None):
    s = ('{"path":"%s","type":"%s","mode":%d,"uid":1000,"gid":1000,"mtime":1700000000,'
         '"mtime_nsec":0,"size":%d' % (path, typ, 0o755 if typ == "dir" else 0o644, size))
    if typ == "file":
        s += ',"sha256":"%s","offset":%d' % (SHA, offset)
    return s + "}"


class Writer:
    """Streams entries to a file, keeping the totals, under a byte budget."""

    def __init__(self, path, budget):
        self.f = open(path, "w")
        self.budget = budget - len(HEAD) - 200  # head, totals, closing
        self.used = 0
        self.n = 0
        self.files = self.dirs = self.bytes = 0
        self.offset = 512
        self.parts = []

    def fits(self, path):
        return self.used + len(path) + 260 <= self.budget

    def add(self, path, typ):
        if typ == "file":
            e = entry(path, "file", 1, self.offset)
            self.offset += 1024
            self.files += 1
            self.bytes += 1
        else:
            e = entry(path, "dir")
            self.dirs += 1
        if self.n:
            e = "," + e
        self.parts.append(e)
        self.used += len(e)
        self.n += 1
        if len(self.parts) >= 4096:
            self.flush()

    def flush(self):
        self.f.write("".join(self.parts))
        self.parts = []

    def close(self, extra_root=""):
        self.flush()
        self.f.close()
        body = open(self.f.name).read()
        with open(self.f.name, "w") as f:
            f.write(HEAD)
            f.write('"totals":{"files":%d,"dirs":%d,"symlinks":0,"bytes":%d},%s"entries":['
                    % (self.files, self.dirs, self.bytes, extra_root))
            f.write(body)
            f.write("]}\n")


def gen_deep(path, mib, bare):
    w = Writer(path, min(mib * 1024 * 1024, CAP))
    depth = 2000  # "d/" * 2000 = 4000 bytes, room left for a file name
    chain = ["/".join(["d"] * k) for k in range(1, depth + 1)]
    if not bare:
        for p in chain:
            w.add(p, "dir")
    i = 0
    # Files spread over the 8 deepest directories, so paths share long
    # prefixes (the costly case for comparisons) and differ at the end.
    while True:
        p = "%s/f%07d" % (chain[depth - 1 - (i % 8)], i)
        if not w.fits(p):
            break
        w.add(p, "file")
        i += 1
    w.close()


def gen_many(path, entries):
    w = Writer(path, CAP)
    for d in range(100):
        w.add("dir%03d" % d, "dir")
    for i in range(entries - 100):
        w.add("dir%03d/file-%07d.json" % (i % 100, i), "file")
    w.close()


def gen_wide(path, mib):
    budget = min(mib * 1024 * 1024, CAP) - 4096
    w = Writer(path, CAP)
    # Unknown keys in the root object, each '"kNNNNNNN":0,'.
    keys = []
    used = 0
    i = 0
    while used < budget:
        k = '"k%08x":0,' % i
        keys.append(k)
        used += len(k)
        i += 1
    w.close(extra_root="".join(keys))


def gen_junk(path, mib, item, pad):
    budget = min(mib * 1024 * 1024, CAP) - 4096
    w = Writer(path, CAP)
    item = item.ljust(pad - 1)
    count = budget // (len(item) + 1)
    w.close(extra_root='"junk":[%s],' % ",".join([item] * count))


def gen_tiny(path, mib):
    w = Writer(path, min(mib * 1024 * 1024, CAP))
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    i = 0
    while True:
        name, v = "", i
        while True:
            name = digits[v % 36] + name
            v //= 36
            if not v:
                break
        if not w.fits(name):
            break
        w.add(name, "dir")
        i += 1
    w.close()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def main():
    args = sys.argv[1:]
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build = os.environ.get("FB_BUILD_DIR", "build")
    keep = None
    runs = 1
    while args and args[0].startswith("--"):
        if args[0] == "--build":
            build = args[1]
        elif args[0] == "--keep":
            keep = args[1]
        elif args[0] == "--runs":
            runs = int(args[1])
        else:
            sys.exit(__doc__)
        args = args[2:]
    build = build if os.path.isabs(build) else os.path.join(src, build)
    # the layers that manifest parsing uses, highest first (core/meson.build)
    core_libs = [os.path.join(build, "core", layer, "libfb%s.a" % layer)
                 for layer in ("format", "base")]
    for lib in core_libs:
        if not os.path.exists(lib):
            sys.exit("no %s: build first" % lib)
    shapes = args or ["deep:21", "deep:250", "deep-bare:250", "many:600000", "tiny:250",
                      "wide:250", "numbers:250", "strings:250", "arrays:250", "numbers-raw:250"]

    tmp = keep or tempfile.mkdtemp(prefix="fb-bench-manifest.")
    os.makedirs(tmp, exist_ok=True)
    try:
        drv_c = os.path.join(tmp, "driver.c")
        drv = os.path.join(tmp, "driver")
        with open(drv_c, "w") as f:
            f.write(DRIVER)
        libs = subprocess.run(["pkg-config", "--libs", "libzstd", "libarchive", "libcjson",
                               "libcrypto"], check=True, capture_output=True,
                              text=True).stdout.split()
        run(["cc", "-O2", "-D_GNU_SOURCE", "-I", os.path.join(src, "include"), drv_c] + core_libs + [
             "-o", drv] + libs + ["-lpthread"])
        print("%-16s %9s %9s %8s %10s %11s %12s" % ("shape", "MiB", "entries", "parse_s",
                                                   "s_per_10MB", "peak_MiB", "parse_MiB"))
        for spec in shapes:
            shape, _, num = spec.partition(":")
            out = os.path.join(tmp, "%s-%s.json" % (shape, num or "default"))
            if not os.path.exists(out):
                if shape == "deep":
                    gen_deep(out, int(num or 250), False)
                elif shape == "deep-bare":
                    gen_deep(out, int(num or 250), True)
                elif shape == "many":
                    gen_many(out, int(num or 600000))
                elif shape == "numbers":
                    gen_junk(out, int(num or 250), "0", 8)
                elif shape == "strings":
                    gen_junk(out, int(num or 250), '""', 8)
                elif shape == "arrays":
                    gen_junk(out, int(num or 250), "[]", 8)
                elif shape == "numbers-raw":
                    gen_junk(out, int(num or 250), "0", 2)
                elif shape == "tiny":
                    gen_tiny(out, int(num or 250))
                elif shape == "wide":
                    gen_wide(out, int(num or 250))
                else:
                    sys.exit("unknown shape %s" % shape)
            size = os.path.getsize(out)
            r = subprocess.run([drv, out, str(runs)], capture_output=True, text=True)
            if r.returncode != 0:
                print("%-16s %9.1f  FAILED: %s" % (spec, size / 1048576, r.stderr.strip()))
                continue
            n, t, peak, delta = r.stdout.split()
            print("%-16s %9.1f %9s %8s %10.2f %11.0f %12.0f%s" % (
                spec, size / 1048576, n if n != "-1" else "refused", t, float(t) / (size / 1e7),
                int(peak) / 1024, int(delta) / 1024,
                "  (%s)" % r.stderr.strip()[:100] if n == "-1" else ""))
            sys.stdout.flush()
    finally:
        if not keep:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
