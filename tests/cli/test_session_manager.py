"""scripts/session_manager.sh: FlowLoom's one-string arguments split like a
shell but never evaluated, FlowLoom's documented examples end to end, the
exact argument vector handed to flowloom-backup, and finding the tool."""
import json
import os
import pathlib
import stat
import subprocess

import pytest

from fbhelpers import REPO, build_dir

SCRIPT = REPO / "scripts" / "session_manager.sh"
NOW = 1764558900


def run_script(fl, *args, path=None, env=None, stdin=None, cwd=None):
    e = fl.env(env)
    e["PATH"] = path if path is not None else f"{build_dir() / 'cli'}:{os.environ['PATH']}"
    proc = subprocess.run(["bash", str(SCRIPT)] + list(args), cwd=str(cwd or fl.root), env=e,
                          input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    return proc


def words(fl, s):
    p = run_script(fl, "words", s)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert out == "" or out.endswith("\0")
    return out.split("\0")[:-1]


@pytest.mark.parametrize("s, expected", [
    ("", []),
    ("   \t\n ", []),
    ("session_12345_1640995200_abc123 full \"Major milestone backup\"",
     ["session_12345_1640995200_abc123", "full", "Major milestone backup"]),
    ("current incremental 'Before refactoring'", ["current", "incremental", "Before refactoring"]),
    ("a'b c'd \"e f\"g", ["ab cd", "e fg"]),
    ("'' \"\" x", ["", "", "x"]),
    ("\"it's\" 'say \"hi\"'", ["it's", "say \"hi\""]),
    ("\"a \\\"b\\\" \\\\ \\$x \\q\"", ["a \"b\" \\ $x \\q"]),
    ("a\\ b c\\\"d \\'e", ["a b", "c\"d", "'e"]),
    ("$(touch /tmp/x) `id` $HOME ~ *", ["$(touch", "/tmp/x)", "`id`", "$HOME", "~", "*"]),
    ("a;b c&&d e>f g|h #i", ["a;b", "c&&d", "e>f", "g|h", "#i"]),
    ("caf\u00e9 \"\u65e5\u672c\"", ["caf\u00e9", "\u65e5\u672c"]),
    ("line1\\\nline2", ["line1line2"]),
])
def test_split_like_a_shell_without_evaluation(fl1, s, expected):
    assert words(fl1, s) == expected


@pytest.mark.parametrize("s", ["\"unbalanced", "it's", "full \"note 'x'", "'a\" b"])
def test_unbalanced_quote_is_refused(fl1, s):
    p = run_script(fl1, "backup", s)
    assert p.returncode == 2
    assert b"unbalanced" in p.stderr
    assert not fl1.store.exists()


def test_flowloom_examples_end_to_end(fl):
    sid = "session_12345_1640995200_abc123"
    fl.session(sid)
    (fl.flowloom / "current_session").write_text(sid + "\n")
    env = {"FLOWLOOM_NOW": str(NOW)}

    p = run_script(fl, "backup", "", env=env)  # /session:backup
    assert p.returncode == 0, p.stderr
    p = run_script(fl, "backup", f'{sid} full "Major milestone backup"', env=env)
    assert p.returncode == 0, p.stderr
    p = run_script(fl, "backup", 'current incremental "Before refactoring"', env=env)
    assert p.returncode == 0, p.stderr
    assert b"Before refactoring" in p.stdout

    backups = fl.index(sid)["backups"]
    assert [(b["type"], b["note"]) for b in backups] == [
        ("incremental", None), ("full", "Major milestone backup"),
        ("incremental", "Before refactoring")]
    for b in backups:
        m = fl.manifest(sid, b["id"])
        assert m["session_id"] == sid and m["note"] == b["note"]

    p = run_script(fl, "list-backups", "")
    assert p.returncode == 0, p.stderr
    assert all(b["id"].encode() in p.stdout for b in backups)
    p = run_script(fl, "list-backups", f"{sid} --json")
    assert [b["id"] for b in json.loads(p.stdout)] == [b["id"] for b in backups]

    p = run_script(fl, "cleanup", "--dry-run --keep-full 1")
    assert p.returncode == 0, p.stderr
    assert b"Dry run" in p.stdout and b"kept: newest full" in p.stdout

    p = run_script(fl, "recover", "latest --dry-run")
    assert p.returncode == 0, p.stderr
    assert backups[-1]["id"].encode() in p.stdout and b"Nothing was changed" in p.stdout


NASTY_NOTES = [
    "$(touch {marker})",
    "`touch {marker}`",
    "ok; touch {marker}; rm -rf x",
    "ok && touch {marker} || echo",
    "ok > {marker}",
    "ok | tee {marker}",
    "$HOME ${{PATH}} $(( 1 + 1 )) ~ *",
]


@pytest.mark.parametrize("quote", ['"', "'"])
@pytest.mark.parametrize("template", NASTY_NOTES)
def test_shell_metacharacters_in_the_note_are_stored_literally(fl1, tmp_path, quote, template):
    marker = tmp_path / "pwned"
    note = template.format(marker=marker)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    p = run_script(fl1, "backup", f"S1 full {quote}{note}{quote}",
                   env={"FLOWLOOM_ROOT": str(fl1.root)}, cwd=cwd)
    assert p.returncode == 0, p.stderr
    [b] = fl1.index("S1")["backups"]
    assert b["note"] == note
    assert fl1.manifest("S1", b["id"])["note"] == note
    assert not marker.exists()
    assert os.listdir(cwd) == []  # no redirection target was created either


def test_unquoted_metacharacters_are_words_never_commands(fl1, tmp_path):
    marker = tmp_path / "pwned"
    # one word: stored as it is
    p = run_script(fl1, "backup", f"S1 full ok;touch${{IFS}}{marker}")
    assert p.returncode == 0, p.stderr
    [b] = fl1.index("S1")["backups"]
    assert b["note"] == f"ok;touch${{IFS}}{marker}"
    # several words: too many arguments for backup, refused; nothing run
    for s in (f"S1 full $(touch {marker})", f"S1 full ok ; touch {marker}",
              f"S1 full `touch {marker}`"):
        p = run_script(fl1, "backup", s)
        assert p.returncode == 2, (s, p.stderr)
        assert b"unexpected argument" in p.stderr
    assert not marker.exists()
    assert len(fl1.index("S1")["backups"]) == 1


def test_a_note_starting_with_a_dash_is_not_an_option(fl1):
    for note in ("-1 regression", "--- milestone ---", "-"):
        p = run_script(fl1, "backup", f"S1 full '{note}' --no-cleanup")
        assert p.returncode == 0, (note, p.stderr)
    assert [b["note"] for b in fl1.index("S1")["backups"]] == [
        "-1 regression", "--- milestone ---", "-"]


@pytest.fixture
def fake_tool(tmp_path):
    """A flowloom-backup on PATH that records its argument vector."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    record = tmp_path / "argv"
    tool = bindir / "flowloom-backup"
    tool.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > "
                    f"'{record}'\nexit 7\n")
    tool.chmod(0o755)

    def argv():
        return record.read_bytes().decode().split("\0")[:-1]
    return f"{bindir}:/usr/bin:/bin", argv


@pytest.mark.parametrize("command, s, expected", [
    ("backup", "", ["backup", "--"]),
    ("backup", 'current full "Major milestone"', ["backup", "--", "current", "full",
                                                  "Major milestone"]),
    ("backup", "full '-x note' --no-verify", ["backup", "--no-verify", "--", "full",
                                              "-x note"]),
    ("backup", "--note '-n' --wait 5 S1", ["backup", "--note", "-n", "--wait", "5", "--", "S1"]),
    ("recover", "latest --target '/tmp/a b' --dry-run",
     ["recover", "--target", "/tmp/a b", "--dry-run", "--", "latest"]),
    ("recover", "S1 --path logs/ -p 'artifacts/*.json' latest",
     ["recover", "--path", "logs/", "-p", "artifacts/*.json", "--", "S1", "latest"]),
    ("list-backups", "--all", ["list", "--all", "--"]),
    ("cleanup", "S1 --keep-full=3 --max-age 7 -- --weird",
     ["cleanup", "--keep-full=3", "--max-age", "7", "--", "S1", "--weird"]),
])
def test_the_argument_vector_handed_to_flowloom_backup(fl1, fake_tool, command, s, expected):
    path, argv = fake_tool
    p = run_script(fl1, command, s, path=path)
    assert p.returncode == 7  # the tool's own exit status
    assert argv() == expected


def test_arguments_from_stdin(fl1, fake_tool):
    path, argv = fake_tool
    p = run_script(fl1, "--stdin", "backup", path=path,
                   stdin=b"current full \"x $(id) 'q'\"\n")
    assert p.returncode == 7, p.stderr
    assert argv() == ["backup", "--", "current", "full", "x $(id) 'q'"]


def test_bad_script_usage(fl1):
    for args in (["frobnicate", ""], [], ["backup", "S1", "full"], ["--stdin", "backup", "x"]):
        p = run_script(fl1, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr
    p = run_script(fl1, "--help")
    assert p.returncode == 0 and b"list-backups" in p.stdout
    assert not fl1.store.exists()


def test_falls_back_to_the_tool_built_in_the_source_tree(fl1, tmp_path):
    # no flowloom-backup on PATH: the script uses $FB_BUILD_DIR (else build/)
    p = run_script(fl1, "backup", "S1 full fallback", path="/usr/bin:/bin",
                   env={"FB_BUILD_DIR": str(build_dir())})
    assert p.returncode == 0, p.stderr
    assert fl1.index("S1")["backups"][0]["note"] == "fallback"
    # and says so clearly when there is none
    p = run_script(fl1, "backup", "S1 full x", path="/usr/bin:/bin",
                   env={"FB_BUILD_DIR": str(tmp_path / "nobuild")})
    assert p.returncode == 5
    assert b"flowloom-backup" in p.stderr and b"PATH" in p.stderr


def test_exit_status_is_the_tools(fl1):
    p = run_script(fl1, "backup", "nosuch full")
    assert p.returncode == 3 and b"nosuch" in p.stderr
    p = run_script(fl1, "recover", "S1 20200101T000000Z-full-abcdef")
    assert p.returncode == 3


def test_command_files_call_the_script(fl1):
    d = REPO / "commands" / "session"
    for name, cmd in (("backup", "backup"), ("recover", "recover"),
                      ("list-backups", "list-backups"), ("cleanup", "cleanup")):
        text = (d / f"{name}.md").read_text()
        assert text.startswith("---\n") and "\ndescription: " in text
        assert "\nallowed-tools: Bash\n" in text.split("\n---\n", 1)[0] + "\n"
        assert f'scripts/session_manager.sh {cmd} "$ARGUMENTS"' in text
        assert f"/session:{name}" in text
    assert "/session:backup [session_id] [type] [note]" in (d / "backup.md").read_text()
