"""SPEC "Positionals": the forms FlowLoom's /session:backup uses, --session,
`current`, $FLOWLOOM_SESSION and .flowloom/current_session, and global
options before or after the command name."""
import pytest

NOW = 1764558900


@pytest.fixture
def two(fl):
    fl.session("S1")
    fl.session("S2")
    (fl.flowloom / "current_session").write_text("S2\nignored second line\n")
    return fl


def only_backup(fl, sid):
    ids = fl.backup_ids(sid)
    assert len(ids) == 1, ids
    return fl.manifest(sid, ids[0])


def test_type_first_means_current_session(two):
    r = two.run("backup", "full", "Major milestone backup")
    assert r.rc == 0, r
    m = only_backup(two, "S2")
    assert m["type"] == "full" and m["note"] == "Major milestone backup"
    assert two.backup_ids("S1") == []


def test_session_type_note(two):
    r = two.run("backup", "S1", "incremental", "my note")
    assert r.rc == 0, r
    m = only_backup(two, "S1")
    assert m["type"] == "incremental" and m["note"] == "my note"


def test_session_and_note_without_type(two):
    r = two.run("backup", "S1", "just a note")
    assert r.rc == 0, r
    m = only_backup(two, "S1")
    assert m["type"] == "incremental" and m["note"] == "just a note"


def test_session_option_and_flags(two):
    r = two.run("backup", "--session", "S1", "--type", "full", "--note", "via flags")
    assert r.rc == 0, r
    m = only_backup(two, "S1")
    assert m["type"] == "full" and m["note"] == "via flags"


def test_session_named_like_a_type_needs_the_option(fl):
    fl.session("full")
    r = fl.run("backup", "--session", "full", "full", "n")
    assert r.rc == 0, r
    m = only_backup(fl, "full")
    assert m["session_id"] == "full" and m["type"] == "full" and m["note"] == "n"


def test_current_word_and_environment(two):
    r = two.run("backup", "current", "full")
    assert r.rc == 0, r
    assert len(two.backup_ids("S2")) == 1
    r = two.run("backup", "full", env={"FLOWLOOM_SESSION": "S1"})
    assert r.rc == 0, r
    assert len(two.backup_ids("S1")) == 1
    r = two.run("backup", "--session", "current", "full", env={"FLOWLOOM_SESSION": "S1"})
    assert r.rc == 0, r
    assert len(two.backup_ids("S1")) == 2


def test_conflicting_type_or_note_is_refused(two):
    assert two.run("backup", "S1", "full", "--type", "incremental").rc == 2
    assert two.run("backup", "S1", "full", "a", "--note", "b").rc == 2
    assert two.backup_ids("S1") == []


def test_global_options_before_or_after_the_command(two, tmp_path):
    outside = tmp_path
    r = two.run("-C", str(two.root), "--session", "S1", "backup", "full", "-q", cwd=outside)
    assert r.rc == 0 and r.out == "", r
    r = two.run("backup", "full", "--root", str(two.root), "--session=S1", "--json", cwd=outside)
    assert r.rc == 0, r
    assert r.json()["session_id"] == "S1"
    r = two.run("list", f"--root={two.root}", "S1", "--json", cwd=outside)
    assert r.rc == 0 and len(r.json()) == 2


def test_show_and_verify_positionals(two):
    a = two.backup("full", sid="S1", now=NOW)
    b = two.backup("full", sid="S2", now=NOW)
    # a lone backup-shaped positional is the backup of the current session (S2)
    r = two.run("show", b["id"])
    assert r.rc == 0 and b["id"] in r.out, r
    r = two.run("show", "latest", "--json")
    assert r.rc == 0 and r.json()["backup_id"] == b["id"], r
    # a lone other positional is the session
    r = two.run("verify", "S1")
    assert r.rc == 0 and f"OK {a['id']}" in r.out and b["id"] not in r.out, r
    r = two.run("show", "S1", "latest")
    assert r.rc == 0 and a["id"] in r.out, r
    r = two.run("verify", "S1", a["id"])
    assert r.rc == 0 and f"OK {a['id']}" in r.out, r
    r = two.run("verify", "--session", "S1", "latest")
    assert r.rc == 0 and f"OK {a['id']}" in r.out, r
    r = two.run("show", "--session", "S1", a["id"])
    assert r.rc == 0 and a["id"] in r.out, r
    # S1's backup is not in S2
    r = two.run("show", a["id"])
    assert r.rc == 3 and a["id"] in r.err, r
    r = two.run("verify", "S2", a["id"])
    assert r.rc == 3, r
    # list's positional is the session; list-backups is the same command
    r = two.run("list-backups", "S1", "-q")
    assert r.rc == 0 and r.out.split() == [a["id"]], r
    r = two.run("list", "-q")
    assert r.rc == 0 and r.out.split() == [b["id"]], r
