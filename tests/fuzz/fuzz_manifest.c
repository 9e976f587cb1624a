/* Fuzz target: the strict manifest parser (fb_manifest_parse), input = the
 * bytes of a manifest.json. Beyond "no crash, no leak, no UB": a rejection
 * carries a documented code and a message, and whatever is accepted
 * serialises back to JSON that parses to the same manifest (the writer and
 * the parser agree, so a backup we accept is one we could have written), and
 * every path is found again through the by-path index restore and the
 * mount use. The fast reading of entries (manifest_entry_fast.c) must
 * change nothing: without it, the same input gets the same verdict, the
 * same message and, when accepted, the same manifest. fb_manifest_check
 * (the rules on the in-memory form) accepts what the parse accepted. */
#include <stdlib.h>
#include <string.h>

#include "fb_manifest.h"
#include "fuzz_util.h"
#include "manifest_i.h"

static void manifest_check_lookup(const fb_manifest *m)
{
    size_t *by_path = fb_manifest_sort_by_path(m);
    if (!by_path)
        fz_harness("fb_manifest_sort_by_path");
    for (size_t i = 0; i < m->n_entries; i++) {
        const char *p = m->entries[i].path;
        long found = fb_manifest_find_path(m, by_path, p, strlen(p));
        /* Paths are unique, so the lookup must land on this very entry. */
        if (found != (long)i)
            fz_fail("manifest: entry %zu (%.100s) is found at %ld", i, p, found);
    }
    free(by_path);
}

/* The strict reading alone must agree with the parse that gave rc, err
 * and m (m NULL when rc != 0). */
static void manifest_check_without_fast(const uint8_t *data, size_t size, int rc,
                                        const fb_error *err, const fb_manifest *m)
{
    fb_manifest slow;
    fb_error serr;
    fb_error_clear(&serr);
    int src = fb_manifest_parse_with((const char *)data, size, "manifest.json", false, &slow,
                                     &serr);
    if (src != rc || (rc != 0 && strcmp(serr.message, err->message) != 0))
        fz_fail("manifest: the fast reading changes the verdict: %d \"%s\" against %d \"%s\"",
                rc, rc ? err->message : "", src, src ? serr.message : "");
    if (rc == 0) {
        char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (fb_manifest_to_json(m, &a, &alen, &serr) != 0 ||
            fb_manifest_to_json(&slow, &b, &blen, &serr) != 0)
            fz_fail("manifest: accepted but cannot be written back: %s", serr.message);
        if (alen != blen || memcmp(a, b, alen) != 0)
            fz_fail("manifest: the fast reading changes what was read");
        free(a);
        free(b);
    }
    fb_manifest_fini(&slow);
}

int fuzz_manifest(const uint8_t *data, size_t size)
{
    static const int allowed[] = {FB_ECORRUPT, FB_EUNSUPPORTED, FB_ENOMEM, 0};
    fb_manifest m;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_manifest_parse((const char *)data, size, "manifest.json", &m, &err);
    if (rc != FB_ENOMEM)
        manifest_check_without_fast(data, size, rc, &err, rc == 0 ? &m : NULL);
    if (rc != 0) {
        fz_check_error("fb_manifest_parse", rc, &err, allowed);
        if (m.n_entries != 0 || m.entries != NULL)
            fz_fail("manifest: rejected input left %zu entries behind", m.n_entries);
        fb_manifest_fini(&m);
        return 0;
    }
    manifest_check_lookup(&m);
    /* The rules on the in-memory form (the manifest cache's check) accept
     * whatever the JSON reading accepts. */
    if (fb_manifest_check(&m, "manifest.json", &err) != 0)
        fz_fail("manifest: parsed, but fb_manifest_check refuses it: %s", err.message);

    char *json1 = NULL, *json2 = NULL;
    size_t len1 = 0, len2 = 0;
    if (fb_manifest_to_json(&m, &json1, &len1, &err) != 0)
        fz_fail("manifest: accepted but cannot be written back: %s", err.message);
    fb_manifest again;
    if (fb_manifest_parse(json1, len1, "manifest.json", &again, &err) != 0)
        fz_fail("manifest: our own serialisation is refused: %s", err.message);
    if (fb_manifest_to_json(&again, &json2, &len2, &err) != 0)
        fz_fail("manifest: re-parsed manifest cannot be written: %s", err.message);
    if (len1 != len2 || memcmp(json1, json2, len1) != 0)
        fz_fail("manifest: parse(write(m)) differs from m");
    if (again.n_entries != m.n_entries || again.totals.bytes != m.totals.bytes ||
        again.totals.files != m.totals.files)
        fz_fail("manifest: entries or totals changed in a round trip");
    for (size_t i = 0; i < m.n_entries; i++)
        if (strcmp(again.entries[i].path, m.entries[i].path) != 0 ||
            again.entries[i].offset != m.entries[i].offset ||
            again.entries[i].meta.size != m.entries[i].meta.size)
            fz_fail("manifest: entry %zu changed in a round trip", i);
    free(json1);
    free(json2);
    fb_manifest_fini(&again);
    fb_manifest_fini(&m);
    return 0;
}

FB_FUZZ_ENTRY(fuzz_manifest)
