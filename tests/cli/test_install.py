"""`meson install --destdir`: the two programs, both man pages, the bash
completions and the FlowLoom command files land where they belong under
the build's prefix, byte for byte what the source tree holds, and the
installed program runs. Needs $FB_BUILD_DIR (a configured and built tree);
skipped without it."""
import json
import os
import pathlib
import shutil
import subprocess

import pytest

from fbhelpers import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    build = os.environ.get("FB_BUILD_DIR")
    if not build:
        pytest.skip("FB_BUILD_DIR is not set: no build directory to install from")
    build = pathlib.Path(build).resolve()
    meson = shutil.which("meson")
    if not meson:
        pytest.skip("meson is not on PATH")
    opts = subprocess.run([meson, "introspect", "--buildoptions", str(build)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    opts = {o["name"]: o["value"] for o in json.loads(opts.stdout)}
    dest = tmp_path_factory.mktemp("destdir")
    p = subprocess.run([meson, "install", "-C", str(build), "--destdir", str(dest),
                        "--no-rebuild"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert p.returncode == 0, p.stdout.decode()
    prefix = dest / opts["prefix"].lstrip("/")

    def under(option):
        value = opts[option]
        return dest / value.lstrip("/") if value.startswith("/") else prefix / value

    return {"dest": dest, "prefix": prefix, "bin": under("bindir"), "man": under("mandir"),
            "data": under("datadir"), "build": build, "fuse": opts.get("fuse")}


def same(installed_file, source):
    assert installed_file.is_file(), f"{installed_file} was not installed"
    assert installed_file.read_bytes() == source.read_bytes(), installed_file


def test_programs(installed):
    cli = installed["bin"] / "flowloom-backup"
    assert cli.is_file() and os.access(cli, os.X_OK), cli
    p = subprocess.run([str(cli), "--version"], stdout=subprocess.PIPE, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith(b"flowloom-backup "), p
    fs = installed["bin"] / "flowloom-backupfs"
    if (installed["build"] / "fs" / "flowloom-backupfs").exists():
        assert fs.is_file() and os.access(fs, os.X_OK), fs
    else:
        assert installed["fuse"] != "enabled"


def test_man_pages(installed):
    for page in ("flowloom-backup.1", "flowloom-backupfs.1"):
        same(installed["man"] / "man1" / page, REPO / "man" / page)


def test_bash_completions(installed):
    # dependency('bash-completion')'s completionsdir is taken under this
    # prefix, so with or without bash-completion.pc it is the same place.
    comp = installed["data"] / "bash-completion" / "completions"
    for name in ("flowloom-backup", "flowloom-backupfs"):
        same(comp / name, REPO / "completion" / name)


def test_flowloom_command_files(installed):
    sources = sorted((REPO / "commands" / "session").glob("*.md"))
    assert len(sources) >= 4
    target = installed["data"] / "flowloom-backup" / "commands" / "session"
    for src in sources:
        same(target / src.name, src)
    assert sorted(p.name for p in target.iterdir()) == [p.name for p in sources]


def test_nothing_outside_the_prefix(installed):
    prefix = installed["prefix"]
    for path in installed["dest"].rglob("*"):
        assert path == prefix or prefix in path.parents or path in prefix.parents, path
