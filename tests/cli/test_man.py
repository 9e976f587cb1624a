"""The manual pages (man/) say what the programs say: every command of
`flowloom-backup --help` has its section (`.SS`) in flowloom-backup.1, every
alias is named there, every option that `<command> --help` lists (long and
short) appears in that command's section, every global option in OPTIONS,
every environment variable the CLI reads (getenv in cli/) in ENVIRONMENT,
exit statuses 0 to 5 in EXIT STATUS, and the version in .TH is the
program's. The same for flowloom-backupfs.1 and `flowloom-backupfs --help`.
Both pages render without a warning with groff (and man-db's man, when
installed)."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from fbhelpers import REPO, build_dir

MAN = REPO / "man"
PAGES = ["flowloom-backup.1", "flowloom-backupfs.1"]


def run_help(binary, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")}
    env["LC_ALL"] = "C.UTF-8"
    p = subprocess.run([str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=30)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout.decode()


# --- what --help says -------------------------------------------------------

def blocks(text):
    """The help text as {heading: lines}: a heading is a line ending in ':'
    that starts at column 0 (Usage: starts one too, with the text after it);
    its block runs to the next blank line."""
    out, name = {}, None
    for line in text.splitlines():
        if not line.strip():
            name = None
            continue
        m = re.match(r"^(\S[^:]*):(.*)$", line)
        if m and not line.startswith(" ") and name is None:
            name = m.group(1)
            out[name] = [m.group(2)] if m.group(2).strip() else []
            continue
        if name is not None:
            out[name].append(line)
    return out


OPT_LINE = re.compile(r"^ {1,8}((?:-[A-Za-z0-9], )?--[a-z][a-z0-9-]*|-[A-Za-z0-9](?=\s))")


def listed_options(lines):
    """The options of an option table: the first column of its lines."""
    opts = set()
    for line in lines:
        m = OPT_LINE.match(line)
        if m:
            opts.update(re.findall(r"--?[A-Za-z0-9][a-z0-9-]*", m.group(1)))
    return opts


def long_options_in(lines):
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", "\n".join(lines)))


def cli_commands(fb_bin):
    """[[name, alias...]] from the Commands: block of flowloom-backup --help."""
    cmds = []
    for line in blocks(run_help(fb_bin, "--help"))["Commands"]:
        m = re.match(r"^  ([a-z][a-z-]*(?:, [a-z][a-z-]*)*)\s{2,}\S", line)
        assert m, f"unexpected line in the Commands block: {line!r}"
        cmds.append(m.group(1).split(", "))
    assert len(cmds) >= 11, cmds
    return cmds


def command_options(fb_bin, cmd):
    """The options `<cmd> --help` gives the command: its Options table and
    the long options of its Usage lines (not the Global options trailer)."""
    b = blocks(run_help(fb_bin, cmd, "--help"))
    assert "Usage" in b, f"{cmd} --help has no Usage line"
    return listed_options(b.get("Options", [])) | long_options_in(b["Usage"])


# --- what the man page says -------------------------------------------------

def man_text(s):
    """Roff source made searchable: escapes that are not text removed,
    \\- as -, and font changes dropped."""
    s = re.sub(r"\\f(?:\[[^]]*\]|\(..|.)", "", s)
    s = s.replace("\\-", "-").replace("\\%", "").replace("\\&", "").replace("\\|", "")
    s = s.replace("\\c", "").replace("\\e", "\\")
    return s


def man_sections(page):
    """{'SH NAME': text, ..., 'SS name': text}: every .SH and .SS section of a
    page, the heading's quotes removed."""
    secs, key = {}, None
    for line in (MAN / page).read_text().splitlines():
        m = re.match(r'^\.(SH|SS)\s+"?(.*?)"?\s*$', line)
        if m:
            key = f"{m.group(1)} {m.group(2)}"
            secs[key] = []
            continue
        if key is not None:
            secs[key].append(line)
    return {k: man_text("\n".join(v)) for k, v in secs.items()}


def mentions(text, opt):
    return re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", text) is not None


# --- the tests --------------------------------------------------------------

def test_every_command_has_its_section(fb_bin):
    secs = man_sections("flowloom-backup.1")
    for names in cli_commands(fb_bin):
        key = f"SS {names[0]}"
        assert key in secs, f"flowloom-backup.1 has no '.SS {names[0]}' section"
        for alias in names[1:]:
            assert mentions(secs[key], alias), f"the {names[0]} section does not name {alias}"
        assert mentions(secs["SH SYNOPSIS"], names[0]), f"SYNOPSIS lacks {names[0]}"


def test_no_section_for_a_command_that_does_not_exist(fb_bin):
    names = {n[0] for n in cli_commands(fb_bin)}
    for key in man_sections("flowloom-backup.1"):
        if key.startswith("SS "):
            assert key[3:] in names, f"flowloom-backup.1 documents '{key[3:]}', which --help lacks"


@pytest.mark.parametrize("index", range(11))
def test_every_option_of_a_command_is_in_its_section(fb_bin, index):
    cmds = cli_commands(fb_bin)
    if index >= len(cmds):
        pytest.skip("fewer commands")
    cmd = cmds[index][0]
    section = man_sections("flowloom-backup.1")[f"SS {cmd}"]
    missing = sorted(o for o in command_options(fb_bin, cmd) if not mentions(section, o))
    assert not missing, f"the man page's '{cmd}' section lacks {missing}"


def test_fuse_options_of_mount_are_in_its_section(fb_bin):
    text = run_help(fb_bin, "mount", "--help")
    opts = set(re.findall(r"-o ([a-z_]+)", text)) | set(re.findall(r"(?<![\w-])-[fds](?= \()", text))
    assert {"cache_size", "meta_cache_size", "allow_other", "-f", "-d", "-s"} <= opts, opts
    section = man_sections("flowloom-backup.1")["SS mount"]
    missing = sorted(o for o in opts if not mentions(section, o))
    assert not missing, f"the man page's 'mount' section lacks {missing}"


def test_every_command_is_checked(fb_bin):
    # The parametrized test above covers 11 commands: a 12th needs a bigger range.
    assert len(cli_commands(fb_bin)) <= 11


def test_options_of_recover_and_log_are_found(fb_bin):
    """The parser of --help is not vacuous."""
    assert {"--target", "-t", "--path", "-p", "--only", "--dry-run", "-n", "--same-owner",
            "--no-safety-backup", "--wait"} <= command_options(fb_bin, "recover")
    assert {"--all", "-a", "--json"} <= command_options(fb_bin, "log")
    assert {"--lazy"} <= command_options(fb_bin, "umount")


def test_global_options_are_in_options(fb_bin):
    b = blocks(run_help(fb_bin, "--help"))
    opts = listed_options(next(v for k, v in b.items() if k.startswith("Global options")))
    assert {"--root", "-C", "--session", "--json", "--help", "--version"} <= opts
    section = man_sections("flowloom-backup.1")["SH OPTIONS"]
    missing = sorted(o for o in opts if not mentions(section, o))
    assert not missing, f"OPTIONS of flowloom-backup.1 lacks {missing}"


def test_environment_lists_every_variable_the_cli_reads():
    names = set()
    for src in (REPO / "cli").glob("*.c"):
        names.update(re.findall(r'getenv\("([A-Z_][A-Z0-9_]*)"\)', src.read_text()))
    assert {"FLOWLOOM_ROOT", "FLOWLOOM_SESSION", "FLOWLOOM_NOW"} <= names
    section = man_sections("flowloom-backup.1")["SH ENVIRONMENT"]
    missing = sorted(n for n in names if not mentions(section, n))
    assert not missing, f"ENVIRONMENT of flowloom-backup.1 lacks {missing}"


def test_exit_status_and_files():
    secs = man_sections("flowloom-backup.1")
    for code in range(6):
        assert re.search(rf"^\.TP\n\.B {code}$", secs["SH EXIT STATUS"], re.M), code
    for f in (".flowloom/sessions", ".flowloom/backups", "backup.json", "index.json",
              "manifest.json", "archive.tar.zst", ".lock"):
        assert f in secs["SH FILES"], f
    for sec in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "SEE ALSO"):
        assert f"SH {sec}" in secs, sec


@pytest.mark.parametrize("page", PAGES)
def test_version_is_the_programs(fb_bin, page):
    version = run_help(fb_bin, "--version").split()[1]
    th = re.search(r"^\.TH .*$", (MAN / page).read_text(), re.M).group(0)
    assert f'"flowloom-backup {version}"' in th, th


def test_backupfs_page_matches_its_help():
    fbfs = build_dir() / "fs" / "flowloom-backupfs"
    if not fbfs.exists():
        pytest.skip("flowloom-backupfs not built (-Dfuse=disabled)")
    text = run_help(fbfs, "--help")
    b = blocks(text)
    ours = set(re.findall(r"-o ([a-z_]+)", "\n".join(b["Options"])))
    assert {"cache_size", "meta_cache_size", "allow_other"} <= ours
    secs = man_sections("flowloom-backupfs.1")
    opts = secs["SH OPTIONS"]
    for name in ours | {"default_permissions"}:
        assert mentions(opts, name), f"OPTIONS of flowloom-backupfs.1 lacks -o {name}"
    for short in ("-f", "-d", "-s", "-h", "--help", "-V", "--version"):
        assert short in text and mentions(opts, short), short
    tree = secs["SH THE TREE"]
    for node in ("<backup_id>/", "latest", "latest-full", "as-of/", "history/"):
        assert node in tree, node
    page = man_text((MAN / "flowloom-backupfs.1").read_text())
    for word in ("EROFS", "EIO", "fusermount3 -u", "flowloom-backup umount", "read-only"):
        assert word in page, word


# --- rendering --------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES)
def test_renders_without_warnings_with_groff(page):
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (scripts/install-deps.sh installs groff-base)")
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN / page)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0 and not p.stderr, p.stderr.decode()


@pytest.mark.parametrize("page", PAGES)
def test_renders_without_warnings_with_man(page):
    if not shutil.which("man") or not shutil.which("groff"):
        pytest.skip("man-db is not installed (scripts/install-deps.sh installs it)")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    p = subprocess.run(["man", "--warnings", "-l", str(MAN / page)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=60)
    assert p.returncode == 0 and not p.stderr, p.stderr.decode()
    out = p.stdout.decode()
    assert "SYNOPSIS" in out and "SEE ALSO" in out
