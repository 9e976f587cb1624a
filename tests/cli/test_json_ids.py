"""One name for a backup's id in every command's --json output: `id`
(issue 9, point 10: `recover` said `backup_id` where `list`, `verify` and
`backup` say `id`). `show --json` prints the manifest itself, whose stored
field stays `backup_id`."""

NOW = 1764558900  # 2025-12-01T03:15:00Z


def all_keys(value):
    """Every object key anywhere in a JSON value."""
    if isinstance(value, dict):
        keys = set(value)
        for v in value.values():
            keys |= all_keys(v)
        return keys
    if isinstance(value, list):
        keys = set()
        for v in value:
            keys |= all_keys(v)
        return keys
    return set()


def test_every_command_calls_the_backup_id_id(fl1, tmp_path):
    full = fl1.backup("full", now=NOW)
    assert "backup_id" not in all_keys(full) and full["id"]
    (fl1.sessions / "S1" / "state.json").write_text('{"step": 2}\n')
    incr = fl1.backup("incremental", now=NOW + 60)
    env = {"FLOWLOOM_NOW": str(NOW + 120)}

    outputs = {}
    outputs["list"] = fl1.ok("list", "S1", "--json").json()
    assert [b["id"] for b in outputs["list"]] == [full["id"], incr["id"]]
    outputs["verify"] = fl1.ok("verify", "S1", "--all", "--json").json()
    assert sorted(b["id"] for b in outputs["verify"]["results"]) == sorted(
        [full["id"], incr["id"]])
    outputs["cleanup"] = fl1.ok("cleanup", "S1", "--dry-run", "--json", env=env).json()
    assert sorted(b["id"] for b in outputs["cleanup"]["kept"]) == sorted(
        [full["id"], incr["id"]])
    outputs["recover --target"] = fl1.ok("recover", "S1", full["id"], "--target",
                                         tmp_path / "copy", "--json", env=env).json()
    outputs["recover --dry-run"] = fl1.ok("recover", "S1", full["id"], "--dry-run", "--json",
                                          env=env).json()
    outputs["recover"] = fl1.ok("recover", "S1", full["id"], "--json", env=env).json()
    for name in ("recover --target", "recover --dry-run", "recover"):
        assert outputs[name]["id"] == full["id"], name
        assert outputs[name]["session_id"] == "S1", name
    for name, out in outputs.items():
        assert "backup_id" not in all_keys(out), (name, out)

    # The manifest is a stored format: show --json prints it as stored.
    shown = fl1.ok("show", "S1", full["id"], "--json").json()
    assert shown["backup_id"] == full["id"] and "id" not in shown
