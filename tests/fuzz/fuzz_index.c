/* Fuzz target: the strict index.json parser (fb_index_parse), input = the
 * bytes of an index. An accepted index must keep its promises (seq strictly
 * increasing, ids unique and found again) and survive a write/parse round
 * trip unchanged; a rejected one must say why with a documented code. The
 * fast reading of the writer's text (index.c) must change nothing: without
 * it, the same input gets the same verdict, the same message and, when
 * accepted, the same index. */
#include <stdlib.h>
#include <string.h>

#include "fb_index.h"
#include "fuzz_util.h"
#include "index_i.h"

/* The strict reading alone must agree with the parse that gave rc, err and
 * idx (idx NULL when rc != 0). */
static void index_check_without_fast(const uint8_t *data, size_t size, int rc,
                                     const fb_error *err, const fb_index *idx)
{
    fb_index slow;
    fb_error serr;
    fb_error_clear(&serr);
    int src = fb_index_parse_with((const char *)data, size, "index.json", false, &slow, &serr);
    if (src != rc || (rc != 0 && strcmp(serr.message, err->message) != 0))
        fz_fail("index: the fast reading changes the verdict: %d \"%s\" against %d \"%s\"", rc,
                rc ? err->message : "", src, src ? serr.message : "");
    if (rc == 0) {
        char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (fb_index_to_json(idx, &a, &alen, &serr) != 0 ||
            fb_index_to_json(&slow, &b, &blen, &serr) != 0)
            fz_fail("index: accepted but cannot be written back: %s", serr.message);
        if (alen != blen || memcmp(a, b, alen) != 0)
            fz_fail("index: the fast reading changes what was read");
        free(a);
        free(b);
    }
    fb_index_fini(&slow);
}

static void index_check_invariants(const fb_index *idx)
{
    for (size_t i = 0; i < idx->n; i++) {
        if (i > 0 && idx->records[i].seq <= idx->records[i - 1].seq)
            fz_fail("index: record %zu seq %llu not above the previous one", i,
                    (unsigned long long)idx->records[i].seq);
        if (fb_index_find(idx, idx->records[i].id) != (long)i)
            fz_fail("index: record %zu (%s) is not found at its place", i, idx->records[i].id);
    }
    const fb_index_record *newest = fb_index_newest(idx);
    if ((newest == NULL) != (idx->n == 0) || (newest && newest != &idx->records[idx->n - 1]))
        fz_fail("index: newest is not the last record");
    if (idx->n && fb_index_next_seq(idx) <= idx->records[idx->n - 1].seq)
        fz_fail("index: next seq does not follow the highest");
}

int fuzz_index(const uint8_t *data, size_t size)
{
    static const int allowed[] = {FB_ECORRUPT, FB_ENOMEM, 0};
    fb_index idx;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_index_parse((const char *)data, size, "index.json", &idx, &err);
    if (rc != FB_ENOMEM)
        index_check_without_fast(data, size, rc, &err, rc == 0 ? &idx : NULL);
    if (rc != 0) {
        fz_check_error("fb_index_parse", rc, &err, allowed);
        fb_index_fini(&idx);
        return 0;
    }
    index_check_invariants(&idx);

    char *json1 = NULL, *json2 = NULL;
    size_t len1 = 0, len2 = 0;
    if (fb_index_to_json(&idx, &json1, &len1, &err) != 0)
        fz_fail("index: accepted but cannot be written back: %s", err.message);
    fb_index again;
    if (fb_index_parse(json1, len1, "index.json", &again, &err) != 0)
        fz_fail("index: our own serialisation is refused: %s", err.message);
    if (fb_index_to_json(&again, &json2, &len2, &err) != 0)
        fz_fail("index: re-parsed index cannot be written: %s", err.message);
    if (len1 != len2 || memcmp(json1, json2, len1) != 0 || again.n != idx.n ||
        strcmp(again.session_id, idx.session_id) != 0)
        fz_fail("index: parse(write(index)) differs from the index");
    free(json1);
    free(json2);
    fb_index_fini(&again);
    fb_index_fini(&idx);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_index)
