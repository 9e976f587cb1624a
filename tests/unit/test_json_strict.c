/* Unit tests of the strict JSON layer: what cJSON would accept but we must
 * refuse (RELIABILITY A13 and "(b) Manifests"), exact integers, the writer,
 * base64 and UTF-8. */
#include <inttypes.h>
#include <math.h>

#include "fbtest.h"
#include "json_strict_i.h"
#include "json_write_i.h"

static fb_json_doc *parse_ok(const char *text)
{
    fb_json_doc *doc = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_json_parse(text, strlen(text), 1 << 20, "t.json", FB_ECORRUPT, &doc, &err);
    if (rc != 0)
        fprintf(stderr, "unexpected parse failure of %.60s: %s\n", text, err.message);
    return doc;
}

/* Parses text (length n) expecting FB_ECORRUPT with every needle in the message. */
static int expect_reject_n(const char *text, size_t n, const char *needle1, const char *needle2)
{
    fb_json_doc *doc = NULL;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_json_parse(text, n, 1 << 20, "t.json", FB_ECORRUPT, &doc, &err);
    int ok = rc == FB_ECORRUPT && doc == NULL && err.code == FB_ECORRUPT &&
             strncmp(err.message, "t.json: ", 8) == 0 && (!needle1 || strstr(err.message, needle1)) &&
             (!needle2 || strstr(err.message, needle2));
    if (!ok)
        fprintf(stderr, "  input %.60s -> rc %d, message \"%s\" (wanted \"%s\" \"%s\")\n", text, rc,
                err.message, needle1 ? needle1 : "", needle2 ? needle2 : "");
    fb_json_doc_free(doc);
    return ok;
}

static int expect_reject(const char *text, const char *needle1, const char *needle2)
{
    return expect_reject_n(text, strlen(text), needle1, needle2);
}

static void test_accepts_valid_json(void)
{
    const char *text = " {\"a\": [1, -2, {\"b\": \"x\\u00e9\\ud83d\\ude00\"}], \"t\": true,"
                       " \"f\": false, \"n\": null, \"s\": \"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}\r\n\t ";
    fb_json_doc *doc = parse_ok(text);
    REQUIRE(doc);
    fb_json_val root, arr, el, obj;
    fb_json_root(doc, &root);
    fb_error err;
    size_t n = 0;
    CHECK_EQ_INT(fb_json_get_array(&root, "a", 0, &arr, &n, &err), 0);
    CHECK_EQ_INT(n, 3);
    char path[FB_JSON_PATH_MAX];
    fb_json_path(&arr, path, sizeof path);
    CHECK(strcmp(path, "a") == 0);
    const cJSON *third = arr.node->child->next->next;
    fb_json_element(&arr, third, 2, &el);
    fb_json_path(&el, path, sizeof path);
    CHECK(strcmp(path, "a[2]") == 0);
    const char *s = NULL;
    CHECK_EQ_INT(fb_json_get_string(&el, "b", 0, &s, &err), 0);
    CHECK(s && strcmp(s, "x\xc3\xa9\xf0\x9f\x98\x80") == 0);
    bool b = false;
    CHECK_EQ_INT(fb_json_get_bool(&root, "t", 0, &b, &err), 0);
    CHECK(b);
    CHECK_EQ_INT(fb_json_get_bool(&root, "f", 0, &b, &err), 0);
    CHECK(!b);
    CHECK_EQ_INT(fb_json_get_string(&root, "n", FB_JSON_NULLABLE, &s, &err), FB_JSON_ABSENT);
    CHECK(s == NULL);
    CHECK_EQ_INT(fb_json_get_string(&root, "s", 0, &s, &err), 0);
    CHECK(s && strcmp(s, "\"\\/\b\f\n\r\t") == 0);
    CHECK_EQ_INT(fb_json_get_object(&root, "nope", FB_JSON_OPTIONAL, &obj, &err), FB_JSON_ABSENT);
    fb_json_doc_free(doc);

    /* Exactly 1000 levels is cJSON's limit and ours. */
    char deep[2001];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 1000);
    deep[2000] = '\0';
    doc = parse_ok(deep);
    CHECK(doc != NULL);
    fb_json_doc_free(doc);
}

static void test_rejects_structure(void)
{
    CHECK(expect_reject("{\"a\":1} 2", "line 1 col 9", "after the JSON value"));
    CHECK(expect_reject("{\"a\":1} x", "line 1 col 9", "unexpected character"));
    CHECK(expect_reject("{\"a\":1}{}", "after the JSON value", NULL));
    CHECK(expect_reject("{\"a\":1}\n\n  ,", "line 3 col 3", NULL));
    CHECK(expect_reject("{\"a\":1,\"a\":2}", "duplicate key \"a\"", "top-level"));
    CHECK(expect_reject("{\"x\":{\"k\":1,\"k\":1}}", "x: duplicate key \"k\"", NULL));
    CHECK(expect_reject("{\"size\":1,\"Size\":2}", "\"size\" and \"Size\" differ only in case",
                        NULL));
    CHECK(expect_reject("{\"e\":[{\"a\":1},{\"b\":1,\"B\":2}]}", "e[1]: keys", NULL));
    /* Many keys take the sorted path. */
    char big[4096] = "{";
    for (int i = 0; i < 40; i++)
        snprintf(big + strlen(big), sizeof big - strlen(big), "\"key%d\":%d,", i, i);
    strcat(big, "\"KEY17\":0}");
    CHECK(expect_reject(big, "\"KEY17\" and \"key17\" differ only in case", NULL));

    char deep[2100];
    memset(deep, '[', 1001);
    memset(deep + 1001, ']', 1001);
    deep[2002] = '\0';
    CHECK(expect_reject(deep, "nesting deeper than 1000", NULL));

    CHECK(expect_reject("", "empty", NULL));
    CHECK(expect_reject("   ", "empty", NULL));
    CHECK(expect_reject("[1,]", "syntax error", NULL));
    CHECK(expect_reject("{\"a\":1,}", "syntax error", NULL));
    CHECK(expect_reject("{'a':1}", "unexpected character", NULL));
    CHECK(expect_reject("{\"a\" 1}", "syntax error", NULL));
    CHECK(expect_reject("\xef\xbb\xbf{}", "line 1 col 1", "non-ASCII"));
    CHECK(expect_reject("{\"a\":1}\x01", "unexpected character", NULL));
    CHECK(expect_reject_n("{\"a\":1}\0", 8, "unexpected character", NULL));
    CHECK(expect_reject("{\"a\":truex}", "unexpected character", NULL));
    CHECK(expect_reject("{\"a\":nul}", "unexpected character", NULL));
}

static void test_rejects_strings(void)
{
    CHECK(expect_reject("{\"p\":\"a\\u0000b\"}", "\\u0000", "(p)"));
    CHECK(expect_reject("{\"e\":[{\"path\":\"a\xff\"}]}", "invalid UTF-8", "(e[0].path)"));
    CHECK(expect_reject("[\"\xc0\xaf\"]", "invalid UTF-8", "([0])")); /* overlong '/' */
    CHECK(expect_reject("[\"\xed\xa0\x80\"]", "invalid UTF-8", NULL)); /* surrogate */
    CHECK(expect_reject("[\"\xf4\x90\x80\x80\"]", "invalid UTF-8", NULL)); /* > U+10FFFF */
    CHECK(expect_reject("[\"\xe2\x82\"]", "invalid UTF-8", NULL)); /* truncated */
    CHECK(expect_reject("{\"k\xff\":1}", "invalid UTF-8", NULL));
    CHECK(expect_reject("[\"a\nb\"]", "control character", NULL));
    CHECK(expect_reject("[\"a\\xb\"]", "invalid escape", NULL));
    CHECK(expect_reject("[\"\\u12\"]", "\\u escape", NULL));
    CHECK(expect_reject("[\"\\ud800\"]", "surrogate", NULL));
    CHECK(expect_reject("[\"\\udc00\\ud800\"]", "surrogate", NULL));
    CHECK(expect_reject("[\"abc", "unterminated", NULL));
    CHECK(expect_reject("{\"a\":1, \"b\": {\"c\": [1, 2, \"x\\u0000\"]}}", "(b.c[2])", NULL));
}

static void test_rejects_numbers(void)
{
    CHECK(expect_reject("[01]", "malformed number", NULL));
    CHECK(expect_reject("[-01]", "malformed number", NULL));
    CHECK(expect_reject("[1.]", "malformed number", NULL));
    CHECK(expect_reject("[.5]", "unexpected character", NULL));
    CHECK(expect_reject("[-]", "malformed number", NULL));
    CHECK(expect_reject("[+1]", "unexpected character", NULL));
    CHECK(expect_reject("[1e]", "malformed number", NULL));
    CHECK(expect_reject("[1.2.3]", "malformed number", NULL));
    CHECK(expect_reject("[0x10]", "unexpected character", NULL));
    CHECK(expect_reject("[NaN]", "unexpected character", NULL));
    CHECK(expect_reject("[Infinity]", "unexpected character", NULL));
    CHECK(expect_reject("[1-2]", "malformed number", NULL));
}

/* Reads key "v" of {"v": text} as u64 in [min,max]; returns rc, message in err. */
static int read_u64(const char *value, uint64_t min, uint64_t max, uint64_t *out, fb_error *err)
{
    char text[256];
    snprintf(text, sizeof text, "{\"o\": {\"v\": %s}}", value);
    fb_json_doc *doc = parse_ok(text);
    if (!doc)
        return 99;
    fb_json_val root, o;
    fb_json_root(doc, &root);
    int rc = fb_json_get_object(&root, "o", 0, &o, err);
    if (rc == 0)
        rc = fb_json_get_u64(&o, "v", 0, min, max, out, err);
    fb_json_doc_free(doc);
    return rc;
}

static void test_integers(void)
{
    fb_error err;
    uint64_t v = 0;
    CHECK_EQ_INT(read_u64("9007199254740992", 0, UINT64_MAX, &v, &err), 0);
    CHECK(v == (UINT64_C(1) << 53));
    CHECK_EQ_INT(read_u64("0", 0, 10, &v, &err), 0);
    CHECK(v == 0);
    CHECK_EQ_INT(read_u64("-0", 0, 10, &v, &err), 0);
    CHECK(v == 0);

    const char *bad[] = {"-1", "1.5", "1e400", "9007199254740993", "\"1\"", "1.0", "1e2",
                         "true", "null", "18446744073709551616",
                         "123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fb_error_clear(&err);
        int rc = read_u64(bad[i], 0, UINT64_MAX, &v, &err);
        CHECK_EQ_INT(rc, FB_ECORRUPT);
        CHECK(strstr(err.message, "t.json: o.v: expected an integer 0..9007199254740992, got "));
        char got[128];
        snprintf(got, sizeof got, "got %s", bad[i]);
        if (!strstr(err.message, got)) {
            fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err.message, got);
            CHECK(0);
        }
    }
    CHECK_EQ_INT(read_u64("[]", 0, 10, &v, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "got an array"));
    CHECK_EQ_INT(read_u64("{}", 0, 10, &v, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "got an object"));
    CHECK_EQ_INT(read_u64("11", 1, 10, &v, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "expected an integer 1..10, got 11"));
    CHECK_EQ_INT(read_u64("0", 1, 10, &v, &err), FB_ECORRUPT);

    /* Signed: the full +-2^53 range. */
    fb_json_doc *doc = parse_ok("{\"a\": -9007199254740992, \"b\": -9007199254740993, \"c\": 5}");
    REQUIRE(doc);
    fb_json_val root;
    fb_json_root(doc, &root);
    int64_t sv = 0;
    CHECK_EQ_INT(fb_json_get_i64(&root, "a", 0, INT64_MIN, INT64_MAX, &sv, &err), 0);
    CHECK(sv == -(INT64_C(1) << 53));
    CHECK_EQ_INT(fb_json_get_i64(&root, "b", 0, INT64_MIN, INT64_MAX, &sv, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "t.json: b: expected an integer"));
    CHECK_EQ_INT(fb_json_get_i64(&root, "c", 0, -3, 3, &sv, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "expected an integer -3..3, got 5"));
    CHECK_EQ_INT(fb_json_get_i64(&root, "missing", 0, 0, 3, &sv, &err), FB_ECORRUPT);
    CHECK(strstr(err.message, "t.json: missing: missing required field"));
    CHECK_EQ_INT(fb_json_get_i64(&root, "missing", FB_JSON_OPTIONAL, 0, 3, &sv, &err),
                 FB_JSON_ABSENT);
    /* Keys are case-sensitive. */
    CHECK_EQ_INT(fb_json_get_i64(&root, "C", 0, 0, 9, &sv, &err), FB_ECORRUPT);
    fb_json_doc_free(doc);
}

static void test_error_code_and_cap(void)
{
    fb_json_doc *doc = NULL;
    fb_error err;
    const char *text = "{\"a\": 1}";
    CHECK_EQ_INT(fb_json_parse(text, strlen(text), 4, "c.json", FB_EINVAL, &doc, &err), FB_EINVAL);
    CHECK(strstr(err.message, "c.json: 8 bytes, more than the limit of 4"));
    CHECK_EQ_INT(fb_json_parse("{", 1, 100, "c.json", FB_EINVAL, &doc, &err), FB_EINVAL);
    CHECK(strstr(err.message, "c.json: invalid JSON at line 1 col"));
    CHECK(doc == NULL);

    /* Type errors describe what was found. */
    CHECK_EQ_INT(fb_json_parse(text, strlen(text), 100, "c.json", FB_EINVAL, &doc, &err), 0);
    REQUIRE(doc);
    fb_json_val root;
    fb_json_root(doc, &root);
    const char *s;
    CHECK_EQ_INT(fb_json_get_string(&root, "a", 0, &s, &err), FB_EINVAL);
    CHECK(strcmp(err.message, "c.json: a: expected a string, got 1") == 0);
    fb_json_val o;
    CHECK_EQ_INT(fb_json_get_array(&root, "a", 0, &o, NULL, &err), FB_EINVAL);
    CHECK(strcmp(err.message, "c.json: a: expected an array, got 1") == 0);
    fb_json_doc_free(doc);
}

/* Keys and strings of the document reach a message through fb_text_quote_n
 * (test_text.c has its rule): quotes, backslash, controls and non-ASCII
 * come out escaped, and a long value is cut. */
static void test_values_are_quoted_in_messages(void)
{
    CHECK(expect_reject("{\"k\\u00e9\":1,\"k\\u00e9\":2}", "duplicate key \"k\\xc3\\xa9\"",
                        NULL));
    CHECK(expect_reject("{\"a\\\"b\":{\"x\":1,\"x\":2}}", "t.json: a\\\"b: duplicate key", NULL));
    /* the pre-scan names a key by its raw text: its backslash is escaped */
    CHECK(expect_reject("{\"k\\n\": [\"\\u0000\"]}", "(k\\\\n[0])", NULL));
    CHECK(expect_reject("{\"k\xc3\xa9\": [\"\\u0000\"]}", "(k\\xc3\\xa9[0])", NULL));

    const char *text = "{\"a\": \"x\\\"y'\\n\\u001b\\\\\\u00e9\", \"long\": \""
                       "0123456789012345678901234567890123456789012345678901234567890123456789\"}";
    fb_json_doc *doc = NULL;
    fb_error err;
    CHECK_EQ_INT(fb_json_parse(text, strlen(text), 1000, "c.json", FB_EINVAL, &doc, &err), 0);
    REQUIRE(doc);
    fb_json_val root;
    fb_json_root(doc, &root);
    uint64_t v;
    CHECK_EQ_INT(fb_json_get_u64(&root, "a", 0, 0, 9, &v, &err), FB_EINVAL);
    CHECK(strcmp(err.message, "c.json: a: expected an integer 0..9, got "
                              "\"x\\\"y\\'\\n\\x1b\\\\\\xc3\\xa9\"") == 0);
    CHECK_EQ_INT(fb_json_get_u64(&root, "long", 0, 0, 9, &v, &err), FB_EINVAL);
    CHECK(strcmp(err.message, "c.json: long: expected an integer 0..9, got \""
                              "0123456789012345678901234567890123456789012345678901234567890123"
                              "...\"") == 0);
    fb_json_doc_free(doc);
}

static void test_writer(void)
{
    fb_json_writer w;
    fb_json_writer_init(&w);
    fb_json_begin_object(&w);
    fb_json_key(&w, "big");
    fb_json_u64(&w, UINT64_C(1) << 53);
    fb_json_key(&w, "neg");
    fb_json_i64(&w, -(INT64_C(1) << 53));
    fb_json_key(&w, "s");
    fb_json_string(&w, "q\"b\\n\nt\t\x01\x7f\xc3\xa9\xff");
    fb_json_key(&w, "empty");
    fb_json_begin_array(&w);
    fb_json_end_array(&w);
    fb_json_key(&w, "eo");
    fb_json_begin_object(&w);
    fb_json_end_object(&w);
    fb_json_key(&w, "arr");
    fb_json_begin_array(&w);
    fb_json_null(&w);
    fb_json_bool(&w, true);
    fb_json_string_or_null(&w, NULL);
    fb_json_end_array(&w);
    fb_json_end_object(&w);
    char *out = NULL;
    size_t len = 0;
    fb_error err;
    CHECK_EQ_INT(fb_json_writer_finish(&w, "doc", &out, &len, &err), 0);
    REQUIRE(out);
    const char *want = "{\n"
                       "  \"big\": 9007199254740992,\n"
                       "  \"neg\": -9007199254740992,\n"
                       "  \"s\": \"q\\\"b\\\\n\\nt\\t\\u0001\\u007f\xc3\xa9\xef\xbf\xbd\",\n"
                       "  \"empty\": [],\n"
                       "  \"eo\": {},\n"
                       "  \"arr\": [\n"
                       "    null,\n"
                       "    true,\n"
                       "    null\n"
                       "  ]\n"
                       "}\n";
    CHECK(strcmp(out, want) == 0);
    CHECK_EQ_INT(len, strlen(want));
    if (strcmp(out, want) != 0)
        fprintf(stderr, "got:\n%s", out);
    /* What we write, we read back exactly. */
    fb_json_doc *doc = parse_ok(out);
    REQUIRE(doc);
    fb_json_val root;
    fb_json_root(doc, &root);
    uint64_t v = 0;
    CHECK_EQ_INT(fb_json_get_u64(&root, "big", 0, 0, UINT64_MAX, &v, &err), 0);
    CHECK(v == UINT64_C(1) << 53);
    fb_json_doc_free(doc);
    free(out);

    /* Beyond 2^53 cannot be written exactly for every reader: refused. */
    fb_json_writer_init(&w);
    fb_json_begin_object(&w);
    fb_json_key(&w, "size");
    fb_json_u64(&w, (UINT64_C(1) << 53) + 1);
    fb_json_end_object(&w);
    CHECK_EQ_INT(fb_json_writer_finish(&w, "doc", &out, &len, &err), FB_EMISUSE);
    CHECK(out == NULL);
    CHECK(strstr(err.message, "doc: cannot write JSON: size: 9007199254740993 is beyond 2^53"));

    fb_json_writer_init(&w);
    fb_json_begin_object(&w);
    fb_json_key(&w, "a");
    CHECK_EQ_INT(fb_json_writer_finish(&w, "doc", &out, &len, &err), FB_EMISUSE);
}

static void test_base64_and_utf8(void)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *e = NULL;
        CHECK_EQ_INT(fb_base64_encode((const uint8_t *)plain[i], strlen(plain[i]), &e), 0);
        CHECK(e && strcmp(e, enc[i]) == 0);
        free(e);
        uint8_t *d = NULL;
        size_t n = 99;
        CHECK_EQ_INT(fb_base64_decode(enc[i], strlen(enc[i]), &d, &n), 0);
        CHECK(d && n == strlen(plain[i]) && memcmp(d, plain[i], n) == 0 && d[n] == '\0');
        free(d);
    }
    const char *bad[] = {"Zg=", "Zh==", "Zm9=", "Z===", "Zm9v\n", "Zm 9", "Zg==Zg==", "=Zg=",
                         "Zm-v", "Zm_v"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *d = NULL;
        size_t n;
        CHECK_EQ_INT(fb_base64_decode(bad[i], strlen(bad[i]), &d, &n), -1);
        CHECK(d == NULL);
    }
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char *e = NULL;
    REQUIRE(fb_base64_encode(all, 256, &e) == 0);
    uint8_t *d = NULL;
    size_t n = 0;
    CHECK_EQ_INT(fb_base64_decode(e, strlen(e), &d, &n), 0);
    CHECK(n == 256 && d && memcmp(d, all, 256) == 0);
    free(d);
    free(e);

    CHECK(fb_utf8_valid("", 0));
    const char *good = "plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    CHECK(fb_utf8_valid(good, strlen(good)));
    CHECK(!fb_utf8_valid(good, strlen(good) - 1));
    CHECK(!fb_utf8_valid("\xff", 1));
    CHECK(!fb_utf8_valid("\xc3", 1));
    CHECK(!fb_utf8_valid("\xe0\x80\xaf", 3));
    CHECK(!fb_utf8_valid("\xed\xbf\xbf", 3));
    char *lossy = NULL;
    CHECK_EQ_INT(fb_utf8_lossy("a\xff\xc3\xa9\xc3", 5, &lossy), 0);
    CHECK(lossy && strcmp(lossy, "a\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd") == 0);
    free(lossy);
}

int main(void)
{
    RUN_TEST(test_accepts_valid_json);
    RUN_TEST(test_rejects_structure);
    RUN_TEST(test_rejects_strings);
    RUN_TEST(test_rejects_numbers);
    RUN_TEST(test_integers);
    RUN_TEST(test_error_code_and_cap);
    RUN_TEST(test_values_are_quoted_in_messages);
    RUN_TEST(test_writer);
    RUN_TEST(test_base64_and_utf8);
    FBTEST_EXIT();
}
