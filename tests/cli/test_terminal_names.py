"""Names on the terminal: the CLI prints raw names by core's rule for names
in messages (fb_path_escape), a piece at a time, so a long name must come
out whole, with no UTF-8 character split where one piece ends, and with
the same escapes a core message would use."""
import os


def test_a_long_name_is_shown_whole_and_escaped_by_the_message_rule(fl):
    sdir = fl.session("S1", realistic=False)
    e = "\u00e9".encode()
    # 202 bytes, then "/": the characters of the file name start at odd
    # offsets, so offset 256 (where the CLI's first piece ends) falls
    # inside one.
    top = b"ab" + e * 100
    name = e * 30 + b"\xc2\x9b\r\\\xff.txt"
    os.makedirs(os.path.join(os.fsencode(str(sdir)), top))
    with open(os.path.join(os.fsencode(str(sdir)), top, name), "wb") as f:
        f.write(b"x")
    fl.backup("full")
    show = fl.run("show", "S1", "latest", "--files")
    assert show.rc == 0, show
    want = top + b"/" + e * 30 + b"\\xc2\\x9b\\r\\\\\\xff.txt"
    assert want in show.stdout_bytes, show
    assert b"\r" not in show.stdout_bytes and b"\xc2\x9b" not in show.stdout_bytes
