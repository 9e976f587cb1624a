#!/usr/bin/env python3
"""Checks that core's modules call only downward (docs/architecture.md):
reads which module defines and which uses each symbol of the layers'
static libraries (nm),
and fails, naming the call, when a module uses one of a higher layer or of
another layer of the same rank, or when modules depend on each other in a
cycle, or when a module sits in a folder other than its layer's (core/<layer>/).
The link of each layer (core/meson.build) already refuses calls up or sideways
between layers; this adds the cycles inside a layer. Run by `meson test`
(suite unit) on the built libraries.

usage: check-layers.py core/base/libfbbase.a core/archive/libfbarchive.a ...
"""
import collections
import subprocess
import sys

# module -> layer; a layer may use its own modules and any layer of lower rank.
LAYERS = {
    "base": (0, ["error", "text", "hash", "ids", "fsutil", "lock", "path_match", "thread"]),
    "archive": (1, ["seek_table", "frame_cache", "frame_proof", "archive_writer",
                    "frame_ring", "hash_lane", "tar_plain", "archive_follow", "archive_reader", "archive_stream",
                    "frame_prefetch", "tar_header", "tar_check"]),
    "format": (1, ["json_strict", "json_prescan", "json_stream", "json_get", "json_write",
                   "json_fields", "manifest", "manifest_entry_fast", "manifest_read", "manifest_rules",
                   "manifest_write", "index", "config"]),
    "store": (2, ["store", "retention", "scan", "live", "as_of", "manifest_cache"]),
    "ops": (3, ["backup", "backup_validate", "backup_source", "verify", "verify_live", "verify_session", "diff", "restore",
                "restore_extract", "restore_changes", "restore_layers", "restore_place",
                "cleanup", "forget", "path_log"]),
    "mount": (4, ["mount_paths", "mount_contents", "mount_asof", "mount_history",
                  "mount_inodes", "mount_attr", "mount_nodes", "mount_refresh", "mount_dirs",
                  "mount_files", "mount_tree"]),
}


def main():
    out = subprocess.run(["nm", "-A"] + sys.argv[1:], capture_output=True, text=True,
                         check=True).stdout
    defined, used = {}, collections.defaultdict(set)
    folder_of = {}
    for line in out.splitlines():
        # "path/libfb<layer>.a:module.c.o:0000000000000000 T symbol" (or "   U symbol")
        head, sep, rest = line.partition(".c.o:")
        if not sep:
            continue
        lib, _, module = head.rpartition(":")
        module = module.rsplit("/", 1)[-1]
        folder_of[module] = lib.rsplit("/", 1)[-1].removeprefix("libfb").removesuffix(".a")
        parts = rest.split()
        if len(parts) == 3 and parts[1] in "TDBR":
            defined[parts[2]] = module
        elif len(parts) == 2 and parts[0] == "U":
            used[module].add(parts[1])
    layer_of = {m: (name, rank) for name, (rank, mods) in LAYERS.items() for m in mods}
    problems = []
    modules = sorted(set(defined.values()) | set(used))
    for m in modules:
        if m not in layer_of:
            problems.append(f"{m}: not in any layer (add it to scripts/check-layers.py "
                            "and docs/architecture.md)")
        elif folder_of.get(m, layer_of[m][0]) != layer_of[m][0]:
            problems.append(f"{m}: built into the {folder_of[m]} library but belongs to "
                            f"layer {layer_of[m][0]} (move it to core/{layer_of[m][0]}/)")
    deps = collections.defaultdict(set)
    for m in modules:
        for sym in sorted(used[m]):
            d = defined.get(sym)
            if not d or d == m:
                continue
            deps[m].add(d)
            if m not in layer_of or d not in layer_of:
                continue
            (ml, mr), (dl, dr) = layer_of[m], layer_of[d]
            if ml != dl and dr >= mr:
                problems.append(f"{m} ({ml}) calls {sym} of {d} ({dl}): not a lower layer")
    # cycles between modules (Tarjan)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in deps[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    for c in cycles:
        problems.append("modules depend on each other in a cycle: " + ", ".join(c))
    for p in problems:
        print("check-layers: " + p)
    if not problems:
        print(f"check-layers: {len(modules)} modules, every call goes down a layer, no cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
