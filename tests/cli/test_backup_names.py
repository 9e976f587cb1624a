"""How users name backups and sessions (SPEC "Finding things"): unique
prefixes of an id or of its 6-hex suffix, latest-full, ambiguous and
unknown names, errors that say where the session id came from, and the
hints `backup` gives for a mistyped type or a note given without --note."""
import pytest

from fbhelpers import tree_snapshot

NOW = 1_800_000_000


@pytest.fixture
def three(fl1):
    """S1 with a full, an incremental and a second full backup, a minute
    apart (so their ids share the date and differ from the minute on)."""
    full1 = fl1.backup("full", now=NOW)["id"]
    (fl1.sessions / "S1" / "state.json").write_text('{"step": 2}\n')
    incr = fl1.backup("incremental", now=NOW + 60)["id"]
    full2 = fl1.backup("full", now=NOW + 120)["id"]
    return fl1, [full1, incr, full2]


def test_prefix_and_suffix_name_one_backup_in_every_command(three):
    fl, (full1, incr, full2) = three
    for spec in (incr[:15], incr[-6:], incr[-6:-2]):
        r = fl.run("show", spec, "--json")
        assert r.rc == 0, (spec, r)
        assert r.json()["backup_id"] == incr
        r = fl.run("verify", "S1", spec, "--json")
        assert r.rc == 0, (spec, r)
        assert [b["id"] for b in r.json()["results"]] == [incr]
    r = fl.run("diff", full1[-6:], full2[-6:], "--json")
    assert r.rc == 0, r
    assert (r.json()["a"], r.json()["b"]) == (full1, full2)
    r = fl.run("recover", incr[-6:], "--dry-run", "--json")
    assert r.rc == 0, r
    assert r.json()["id"] == incr


def test_latest_full_is_the_newest_full_backup(three):
    fl, (full1, incr, full2) = three
    (fl.sessions / "S1" / "state.json").write_text('{"step": 3}\n')
    incr2 = fl.backup("incremental", now=NOW + 180)["id"]
    assert fl.run("show", "latest", "--json").json()["backup_id"] == incr2
    assert fl.run("show", "latest-full", "--json").json()["backup_id"] == full2
    assert fl.run("show", "S1", "latest-full", "--json").json()["backup_id"] == full2


def test_ambiguous_prefix_exits_2_naming_the_candidates(three):
    fl, ids = three
    common = ids[0][:9]  # "YYYYMMDDT": every backup of the session
    before = tree_snapshot(fl.store)
    for cmd in (["show", common], ["recover", "S1", common], ["verify", "S1", common]):
        r = fl.run(*cmd)
        assert r.rc == 2, (cmd, r)
        assert f"backup '{common}' is ambiguous in session S1: it could be " in r.err, r
        for bid in ids:
            assert bid in r.err, (cmd, r)
    assert tree_snapshot(fl.store) == before


def test_unknown_name_is_exit_3_alike_in_show_and_recover(three):
    # The issue: the same typo gave exit 2 from show ("which backup?") and
    # exit 3 from recover ("session '75b6ae' not found").
    fl, _ = three
    before = tree_snapshot(fl.sessions / "S1")
    for cmd in ("show", "recover", "verify"):
        r = fl.run(cmd, "75b6ae")
        assert r.rc == 3, (cmd, r)
        assert ("backup '75b6ae' not found in session S1: no backup id, nor the 6-hex suffix "
                "of one, starts with it (the session comes from .flowloom/current_session)"
                in r.err), (cmd, r)
    assert tree_snapshot(fl.sessions / "S1") == before


def test_a_word_that_is_a_session_stays_the_session(three):
    fl, _ = three
    fl.session("S2", realistic=False)
    (fl.sessions / "S2" / "a.json").write_text("{}\n")
    s2 = fl.backup("full", sid="S2", now=NOW + 300)["id"]
    r = fl.run("show", "S2", "latest", "--json")
    assert r.rc == 0 and r.json()["backup_id"] == s2, r
    r = fl.run("list", "S2", "--json")
    assert r.rc == 0, r
    r = fl.run("show", "S2")
    assert r.rc == 2 and "which backup?" in r.err, r


def test_errors_say_where_the_session_came_from(three):
    fl, _ = three
    r = fl.run("list", env={"FLOWLOOM_SESSION": "nosuch"})
    assert r.rc == 3, r
    assert "session 'nosuch' (from $FLOWLOOM_SESSION) not found" in r.err, r
    (fl.flowloom / "current_session").write_text("stale\n")
    r = fl.run("list")
    assert r.rc == 3, r
    assert "session 'stale' (from .flowloom/current_session) not found" in r.err, r
    r = fl.run("backup", "full")
    assert r.rc == 3, r
    assert "session 'stale' (from .flowloom/current_session) not found" in r.err, r
    r = fl.run("list", "--session", "gone")
    assert r.rc == 3 and "session 'gone' (from --session) not found" in r.err, r
    r = fl.run("show", "S1", "latest", "--json")
    assert r.rc == 0, r


def test_backup_suggests_the_type_for_a_mistyped_type(fl1):
    before = tree_snapshot(fl1.flowloom)
    r = fl1.run("backup", "ful", "a note")
    assert r.rc == 3, r
    assert "session 'ful' (from the command line) not found" in r.err, r
    assert "Did you mean the backup type 'full'?" in r.err, r
    r = fl1.run("backup", "incremetnal")
    assert r.rc == 3 and "Did you mean the backup type 'incremental'?" in r.err, r
    assert tree_snapshot(fl1.flowloom) == before


def test_backup_suggests_note_for_a_note_given_alone(fl1):
    before = tree_snapshot(fl1.flowloom)
    r = fl1.run("backup", "before refactor")
    assert r.rc == 2, r
    assert "invalid session id" in r.err, r
    assert "To give a note, use --note: flowloom-backup backup --note 'before refactor'" in r.err
    # a real but unknown session name is not taken for a note
    r = fl1.run("backup", "S9")
    assert r.rc == 3 and "--note" not in r.err and "Did you mean" not in r.err, r
    assert tree_snapshot(fl1.flowloom) == before
