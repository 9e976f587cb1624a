"""The bash completions (completion/): sourced into `bash -c` with COMP_WORDS
and COMP_CWORD set, the completion function is called and COMPREPLY read.
Checked: the commands are those of `flowloom-backup --help`; each command's
options are exactly those its `--help` lists plus the global ones (so the
static lists in the script stay in sync with the program); session ids come
from .flowloom/sessions/ of the root ($FLOWLOOM_ROOT, -C/--root on the line,
else the nearest parent directory holding .flowloom); backup ids of the
session on the line, else of the current session ($FLOWLOOM_SESSION, else
.flowloom/current_session), plus latest and latest-full; directories for
--target; and flowloom-backupfs's options against its --help."""
import os
import re
import subprocess

import pytest

from fbhelpers import REPO, build_dir
from test_man import blocks, cli_commands, command_options, listed_options, run_help

SCRIPT = REPO / "completion" / "flowloom-backup"
FS_SCRIPT = REPO / "completion" / "flowloom-backupfs"


def complete(words, cwd, env=None, script=SCRIPT, func="_flowloom_backup"):
    """COMPREPLY for the command line `words`, the cursor on the last word."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")}
    e.update(env or {})
    e["COMP_CWORD_TEST"] = str(len(words) - 1)
    code = (f'source "$0" || exit 99\n'
            f'COMP_WORDS=("$@"); COMP_CWORD=$COMP_CWORD_TEST\n'
            f'COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}\n'
            f'{func} || true\n'
            f'printf "%s\\n" "${{COMPREPLY[@]}}"\n')
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", code, str(script), *words],
                       cwd=str(cwd), env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    assert not p.stderr, p.stderr.decode()
    return [w for w in p.stdout.decode().split("\n") if w]


def global_options(fb_bin):
    b = blocks(run_help(fb_bin, "--help"))
    return listed_options(next(v for k, v in b.items() if k.startswith("Global options")))


def trailer_options(fb_bin, cmd):
    """The options of the "Global options: -C/--root DIR, ..." trailer of
    `<cmd> --help`: the global options a command takes."""
    b = blocks(run_help(fb_bin, cmd, "--help"))
    text = " ".join(b["Global options"])
    return set(re.findall(r"(?<![\w-])--?[A-Za-z][a-z0-9-]*", text))


@pytest.fixture
def store(fl):
    """Sessions S1 (current, 2 backups), S2 (1 backup) and S3 (none)."""
    fl.session("S1")
    fl.session("S2")
    fl.session("S3", realistic=False)
    (fl.flowloom / "current_session").write_text("S1\n")
    s1 = [fl.backup("full", sid="S1", now=1764558900)["id"],
          fl.backup("incremental", sid="S1", now=1764559000)["id"]]
    s2 = [fl.backup("full", sid="S2", now=1764558900)["id"]]
    return fl, s1, s2


def test_commands(fl, fb_bin):
    names = {n for names in cli_commands(fb_bin) for n in names}
    assert set(complete(["flowloom-backup", ""], fl.root)) == names
    assert set(complete(["flowloom-backup", "re"], fl.root)) == {"recover", "restore"}
    # after global options too
    assert "log" in complete(["flowloom-backup", "-C", str(fl.root), "--json", "l"], fl.root)


def test_global_options(fl, fb_bin):
    got = set(complete(["flowloom-backup", "-"], fl.root))
    assert got == global_options(fb_bin)
    assert {"--root", "-C", "--session", "--version", "--help"} <= got


def test_options_of_every_command_are_its_help(fl, fb_bin):
    """The script's static option lists, command by command, against --help:
    a new option in the program and not in the completion (or the reverse)
    fails here."""
    glob = global_options(fb_bin)
    assert {"-C", "--root", "--session", "--json"} <= trailer_options(fb_bin, "backup")
    for names in cli_commands(fb_bin):
        cmd = names[0]
        if cmd == "mount":
            text = run_help(fb_bin, "mount", "--help")
            expected = {"-f", "-d", "-s", "-o"}
            for o in expected:
                assert re.search(rf"(?<![\w-]){o}(?![\w-])", text), o
        else:
            expected = command_options(fb_bin, cmd) | trailer_options(fb_bin, cmd)
            assert trailer_options(fb_bin, cmd) <= glob
        for name in names:
            got = complete(["flowloom-backup", name, "-"], fl.root)
            assert len(got) == len(set(got)), f"{name}: an option offered twice: {got}"
            got = set(got)
            assert got == expected, (name, sorted(got - expected), sorted(expected - got))


def test_options_of_recover(fl):
    got = complete(["flowloom-backup", "recover", "--"], fl.root)
    for o in ("--target", "--only", "--path", "--dry-run", "--no-safety-backup", "--same-owner",
              "--wait", "--json", "--session", "--root"):
        assert o in got
    assert complete(["flowloom-backup", "restore", "--pa"], fl.root) == ["--path"]
    assert complete(["flowloom-backup", "log", "--a"], fl.root) == ["--all"]


def test_session_ids(store):
    fl, s1, s2 = store
    assert set(complete(["flowloom-backup", "list", ""], fl.root)) == {"S1", "S2", "S3"}
    assert set(complete(["flowloom-backup", "cleanup", "S"], fl.root)) == {"S1", "S2", "S3"}
    assert set(complete(["flowloom-backup", "--session", ""], fl.root)) == {"S1", "S2", "S3",
                                                                          "current"}
    got = set(complete(["flowloom-backup", "backup", ""], fl.root))
    assert got == {"S1", "S2", "S3", "full", "incremental"}
    assert set(complete(["flowloom-backup", "backup", "S2", ""], fl.root)) == {"full",
                                                                             "incremental"}
    got = set(complete(["flowloom-backup", "--session", "S2", "backup", ""], fl.root))
    assert got == {"full", "incremental"}


def test_backup_ids_of_the_session_on_the_line(store):
    fl, s1, s2 = store
    ids2 = set(s2) | {"latest", "latest-full"}
    assert set(complete(["flowloom-backup", "show", "S2", ""], fl.root)) == ids2
    assert set(complete(["flowloom-backup", "recover", "--session", "S2", ""], fl.root)) == ids2
    assert set(complete(["flowloom-backup", "--session", "S2", "verify", ""], fl.root)) == ids2
    assert set(complete(["flowloom-backup", "diff", "S2", s2[0], ""], fl.root)) == ids2
    assert set(complete(["flowloom-backup", "forget", "S2", "l"], fl.root)) == {"latest",
                                                                              "latest-full"}
    # a session without backups: none
    assert set(complete(["flowloom-backup", "show", "S3", ""], fl.root)) == set()


def test_backup_ids_of_the_current_session(store):
    fl, s1, s2 = store
    ids1 = set(s1) | {"latest", "latest-full"}
    got = set(complete(["flowloom-backup", "recover", ""], fl.root))
    assert got == ids1 | {"S1", "S2", "S3"}
    prefix = s1[1][:16]
    got = set(complete(["flowloom-backup", "show", prefix], fl.root))
    assert got == {i for i in s1 if i.startswith(prefix)}
    # $FLOWLOOM_SESSION before .flowloom/current_session
    got = set(complete(["flowloom-backup", "diff", "2"], fl.root, env={"FLOWLOOM_SESSION": "S2"}))
    assert got == set(s2)
    # after a backup a second one of the same session
    assert set(complete(["flowloom-backup", "diff", s1[0], ""], fl.root)) == ids1


def test_the_root_is_found_as_the_cli_finds_it(store, tmp_path):
    fl, s1, s2 = store
    sub = fl.root / "deep" / "er"
    sub.mkdir(parents=True)
    assert set(complete(["flowloom-backup", "list", ""], sub)) == {"S1", "S2", "S3"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert complete(["flowloom-backup", "list", ""], elsewhere) == []
    env = {"FLOWLOOM_ROOT": str(fl.root)}
    assert set(complete(["flowloom-backup", "list", ""], elsewhere, env)) == {"S1", "S2", "S3"}
    for opt in ("-C", "--root"):
        got = complete(["flowloom-backup", opt, str(fl.root), "show", "S2", ""], elsewhere)
        assert set(got) == set(s2) | {"latest", "latest-full"}
        got = complete(["flowloom-backup", "show", opt, str(fl.root), "S2", ""], elsewhere)
        assert set(got) == set(s2) | {"latest", "latest-full"}
    # --root=DIR and --session=ID, split at '=' as bash splits them (COMP_WORDBREAKS)
    got = complete(["flowloom-backup", "--root", "=", str(fl.root), "--session", "=", "S2",
                    "show", ""], elsewhere)
    assert set(got) == set(s2) | {"latest", "latest-full"}
    got = complete(["flowloom-backup", "--root", "=", str(fl.root), "list", ""], elsewhere)
    assert set(got) == {"S1", "S2", "S3"}
    got = complete(["flowloom-backup", "--session", "=", ""], fl.root)
    assert set(got) == {"S1", "S2", "S3", "current"}


def test_directories_for_target_and_root(fl, tmp_path):
    (tmp_path / "out-dir").mkdir()
    (tmp_path / "out-file").write_text("x")
    for opt in ("--target", "-t"):
        got = complete(["flowloom-backup", "recover", opt, "out"], tmp_path)
        assert got == ["out-dir"]
    assert complete(["flowloom-backup", "-C", "out"], tmp_path) == ["out-dir"]
    assert complete(["flowloom-backup", "mount", "out"], tmp_path) == ["out-dir"]
    assert set(complete(["flowloom-backup", "backup", "--type", ""], tmp_path)) == {
        "full", "incremental"}


def test_log_completes_paths_of_the_session(store):
    fl, s1, s2 = store
    got = set(complete(["flowloom-backup", "log", "S2", "sta"], fl.root))
    assert got == {"state.json", "state/"}
    got = set(complete(["flowloom-backup", "log", "state/"], fl.root))
    assert got == {"state/plan.json", "state/notes.md"}


def test_backupfs(fl):
    fbfs = build_dir() / "fs" / "flowloom-backupfs"
    if not fbfs.exists():
        pytest.skip("flowloom-backupfs not built (-Dfuse=disabled)")
    text = run_help(fbfs, "--help")

    def comp(words, cwd=fl.root):
        return complete(words, cwd, script=FS_SCRIPT, func="_flowloom_backupfs")

    opts = set(comp(["flowloom-backupfs", "-"]))
    for o in re.findall(r"^ {4}(-[A-Za-z])\b", text, re.M):
        assert o in opts, o
    assert {"-o", "-f", "-d", "-s", "--help", "--version"} <= opts
    ours = set(re.findall(r"-o ([a-z_]+)", "\n".join(blocks(text)["Options"])))
    assert {"cache_size", "meta_cache_size", "allow_other"} <= ours
    o_values = {v.rstrip("=") for v in comp(["flowloom-backupfs", "-o", ""])}
    assert ours <= o_values
    assert comp(["flowloom-backupfs", "-o", "allow_other,meta"]) == [
        "allow_other,meta_cache_size="]
    assert comp(["flowloom-backupfs", str(fl.root) + "/.flow"]) == [str(fl.flowloom)]
