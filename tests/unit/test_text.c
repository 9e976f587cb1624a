/* Unit tests of the two escaping rules of core/base/text.c, by exact output:
 * fb_path_escape for names from disk, fb_text_quote for untrusted values.
 * Every message of both programs is built on them, so a change of rule
 * must show up here first. */
#include "fbtest.h"
#include "fb_text.h"

static int same(const char *got, const char *want)
{
    if (strcmp(got, want) == 0)
        return 1;
    fprintf(stderr, "  got  \"%s\"\n  want \"%s\"\n", got, want);
    return 0;
}

static const char *quote(const char *s, size_t len, size_t cut, size_t size)
{
    static char out[1024];
    memset(out, '#', sizeof out);
    return fb_text_quote_n(s, len, cut, out, size);
}

static const char *path(const char *s, size_t size)
{
    static char out[1024];
    memset(out, '#', sizeof out);
    return fb_path_escape(s, out, size);
}

static void test_quote_escapes(void)
{
    char out[256];
    CHECK(same(quote("plain id-1.x_2", 14, 160, 256), "plain id-1.x_2"));
    CHECK(same(quote("a\nb\tc\rd", 7, 160, 256), "a\\nb\\tc\\rd"));
    CHECK(same(quote("\x01\x1b[31m\x7f", 7, 160, 256), "\\x01\\x1b[31m\\x7f"));
    CHECK(same(quote("it's \"x\"", 8, 160, 256), "it\\'s \\\"x\\\""));
    CHECK(same(quote("a\\b", 3, 160, 256), "a\\\\b"));
    /* non-ASCII, valid or not, is shown as bytes: the value is plain ASCII */
    CHECK(same(quote("caf\xc3\xa9", 5, 160, 256), "caf\\xc3\\xa9"));
    CHECK(same(quote("\xff\xc3", 2, 160, 256), "\\xff\\xc3"));
    CHECK(same(quote("\xc2\x9b", 2, 160, 256), "\\xc2\\x9b"));
    /* _n reads len bytes, a NUL among them included */
    CHECK(same(quote("a\0b", 3, 160, 256), "a\\x00b"));
    CHECK(same(quote("abcdef", 3, 160, 256), "abc"));
    CHECK(same(quote("", 0, 160, 256), ""));
    /* fb_text_quote: the whole string, and it returns out */
    CHECK(fb_text_quote("x'y", out, sizeof out) == out && same(out, "x\\'y"));
}

static void test_quote_cut(void)
{
    CHECK(same(quote("abcdefgh", 8, 4, 256), "abcd..."));
    CHECK(same(quote("abcd", 4, 4, 256), "abcd"));
    CHECK(same(quote("ab\ncd", 5, 3, 256), "ab\\n..."));
    /* fb_text_quote cuts after FB_TEXT_QUOTE_CUT bytes */
    char in[200], want[FB_TEXT_QUOTE_CUT + 4], out[FB_TEXT_QUOTE_SIZE(FB_TEXT_QUOTE_CUT)];
    memset(in, 'a', sizeof in - 1);
    in[sizeof in - 1] = '\0';
    memset(want, 'a', FB_TEXT_QUOTE_CUT);
    memcpy(want + FB_TEXT_QUOTE_CUT, "...", 4);
    CHECK(same(fb_text_quote(in, out, sizeof out), want));
    /* FB_TEXT_QUOTE_SIZE holds the worst case: every byte as \xNN */
    char ff[FB_TEXT_QUOTE_CUT + 1], big[FB_TEXT_QUOTE_SIZE(FB_TEXT_QUOTE_CUT)];
    memset(ff, 0xff, FB_TEXT_QUOTE_CUT);
    ff[FB_TEXT_QUOTE_CUT] = '\0';
    fb_text_quote(ff, big, sizeof big);
    CHECK_EQ_INT(strlen(big), 4 * FB_TEXT_QUOTE_CUT);
    CHECK(strstr(big, "...") == NULL);
}

static void test_quote_tiny_buffer(void)
{
    char out[8] = "#######";
    /* size 0: nothing written */
    fb_text_quote_n("abc", 3, 160, out, 0);
    CHECK(out[0] == '#');
    CHECK(same(quote("abc", 3, 160, 1), ""));
    CHECK(same(quote("abcdef", 6, 160, 3), ""));
    CHECK(same(quote("abcdef", 6, 160, 4), "..."));
    CHECK(same(quote("abcdef", 6, 160, 5), "a..."));
    CHECK(same(quote("abc", 3, 160, 4), "abc"));
    /* an escape is never split */
    CHECK(same(quote("\n\n\n", 3, 160, 6), "\\n..."));
    CHECK(same(quote("\x01", 1, 160, 5), "\\x01"));
    CHECK(same(quote("\x01", 1, 160, 4), "..."));
    CHECK(same(quote("a\x01", 2, 160, 5), "a..."));
    CHECK(same(quote("a\x01", 2, 160, 6), "a\\x01"));
}

static void test_path_escape(void)
{
    CHECK(same(path("dir/new\nline\tx\r", 256), "dir/new\\nline\\tx\\r"));
    CHECK(same(path("a\\b", 256), "a\\\\b"));
    /* quotes are part of names and stay as they are */
    CHECK(same(path("\"it's\"", 256), "\"it's\""));
    /* valid UTF-8 is kept, except the C1 controls; invalid bytes as \xNN */
    CHECK(same(path("caf\xc3\xa9", 256), "caf\xc3\xa9"));
    CHECK(same(path("caf\xe9", 256), "caf\\xe9"));
    CHECK(same(path("\xc3", 256), "\\xc3"));
    CHECK(same(path("\xed\xa0\x80", 256), "\\xed\\xa0\\x80")); /* a UTF-16 surrogate */
    CHECK(same(path("\xc2\x9b" "1m", 256), "\\xc2\\x9b1m"));
    CHECK(same(path("\xc2\xa0", 256), "\xc2\xa0"));
    CHECK(same(path("\x1b[31m\x7f", 256), "\\x1b[31m\\x7f"));
    char out[16];
    CHECK(fb_path_escape_n("abc/def", 3, out, sizeof out) == out && same(out, "abc"));
    CHECK(same(fb_path_escape_n("a\0b", 3, out, sizeof out), "a\\x00b"));
}

static void test_path_truncation(void)
{
    CHECK(same(path("abcdefgh", 6), "ab..."));
    CHECK(same(path("abcde", 6), "abcde"));
    /* a character is never split */
    CHECK(same(path("\xc3\xa9\xc3\xa9\xc3\xa9", 7), "\xc3\xa9\xc3\xa9\xc3\xa9"));
    CHECK(same(path("\xc3\xa9\xc3\xa9\xc3\xa9", 6), "\xc3\xa9..."));
    CHECK(same(path("\n\n", 5), "\\n\\n"));
    CHECK(same(path("\n\n\n", 5), "..."));
    CHECK(same(path("\n\n\n", 6), "\\n..."));
    char out[4] = "###";
    fb_path_escape("abc", out, 0);
    CHECK(out[0] == '#');
    CHECK(same(path("abc", 1), ""));
    CHECK(same(path("abcd", 3), ""));
    /* 4 * strlen + 1 holds any name whole */
    char worst[11], big[41];
    memset(worst, 0x01, 10);
    worst[10] = '\0';
    CHECK_EQ_INT(strlen(fb_path_escape(worst, big, sizeof big)), 40);
    CHECK(strstr(big, "...") == NULL);
}

int main(void)
{
    test_quote_escapes();
    test_quote_cut();
    test_quote_tiny_buffer();
    test_path_escape();
    test_path_truncation();
    return fbtest_failures ? 1 : 0;
}
