#!/usr/bin/env bash
# Installs the Debian packages the build, the demo and the tests need, only
# when one is missing (checked with dpkg-query, so a ready machine needs no
# network). Uses sudo when not run as root. Shared by demo.sh and test.sh.
set -euo pipefail

PACKAGES=(
    gcc libc6-dev pkg-config meson ninja-build          # build
    libfuse3-dev libarchive-dev libcjson-dev libzstd-dev libssl-dev libxxhash-dev
    fuse3                                               # fusermount3 for mount/umount
    python3 python3-pytest tar zstd libarchive-tools jq rsync util-linux strace  # tests
    time                                                # /usr/bin/time: peak RSS in tests/reliability
    groff-base man-db                                   # groff, man: tests/cli/test_man.py renders man/
    libasan8 libubsan1                                  # gcc 12's ASan (with LSan) and UBSan runtimes
    clang libclang-rt-14-dev                            # the clang build; its sanitizer and libFuzzer runtimes
    llvm                                                # llvm-symbolizer: stack traces in clang sanitizer reports
)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: dpkg-query not found; install these yourself: ${PACKAGES[*]}" >&2
    exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: missing packages (${missing[*]}) and no sudo to install them" >&2
        exit 1
    fi
    SUDO=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
