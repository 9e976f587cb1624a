/* index.json: the per-session list of backups (newest last). It is derived
 * from the manifests, so parsing is as strict as for a manifest: a record
 * that does not hold up makes the whole index corrupt and the store
 * rebuilds it, rather than half-trusting it. */
#include "fb_index.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_hash.h"
#include "fb_ids.h"
#include "fb_store.h"
#include "index_i.h"
#include "json_fields_i.h"
#include "json_plain_i.h"

void fb_index_init(fb_index *idx, const char *session_id)
{
    memset(idx, 0, sizeof *idx);
    if (session_id) {
        size_t n = strnlen(session_id, FB_SESSION_ID_MAX);
        memcpy(idx->session_id, session_id, n);
        idx->session_id[n] = '\0';
    }
}

static void record_fini(fb_index_record *r)
{
    free(r->note);
    r->note = NULL;
}

void fb_index_fini(fb_index *idx)
{
    if (!idx)
        return;
    for (size_t i = 0; i < idx->n; i++)
        record_fini(&idx->records[i]);
    free(idx->records);
    memset(idx, 0, sizeof *idx);
}

static int reserve(fb_index *idx, fb_error *err)
{
    if (idx->n < idx->cap)
        return 0;
    size_t cap = idx->cap ? idx->cap * 2 : 16;
    size_t bytes;
    if (__builtin_mul_overflow(cap, sizeof *idx->records, &bytes))
        return fb_error_set(err, FB_ENOMEM, "index of session %s: too many records",
                            idx->session_id);
    fb_index_record *r = realloc(idx->records, bytes);
    if (!r)
        return fb_error_set(err, FB_ENOMEM, "index of session %s: out of memory",
                            idx->session_id);
    idx->records = r;
    idx->cap = cap;
    return 0;
}

long fb_index_find(const fb_index *idx, const char *backup_id)
{
    for (size_t i = 0; backup_id && i < idx->n; i++)
        if (strcmp(idx->records[i].id, backup_id) == 0)
            return (long)i;
    return -1;
}

int fb_index_add_from_manifest(fb_index *idx, const fb_manifest *m, fb_error *err)
{
    if (idx->session_id[0] && strcmp(idx->session_id, m->session_id) != 0)
        return fb_error_set(err, FB_EMISUSE, "index of session %s: backup %s belongs to session %s",
                            idx->session_id, m->backup_id, m->session_id);
    if (fb_index_find(idx, m->backup_id) >= 0)
        return fb_error_set(err, FB_EEXIST, "index of session %s: backup %s is already listed",
                            idx->session_id, m->backup_id);
    size_t pos = idx->n;
    while (pos > 0 && idx->records[pos - 1].seq > m->seq)
        pos--;
    if (pos > 0 && idx->records[pos - 1].seq == m->seq)
        return fb_error_set(err, FB_EEXIST,
                            "index of session %s: seq %" PRIu64 " of backup %s is already used by %s",
                            idx->session_id, m->seq, m->backup_id, idx->records[pos - 1].id);
    int rc = reserve(idx, err);
    if (rc < 0)
        return rc;
    fb_index_record r;
    memset(&r, 0, sizeof r);
    if (m->note && !(r.note = strdup(m->note)))
        return fb_error_set(err, FB_ENOMEM, "index of session %s: out of memory",
                            idx->session_id);
    memcpy(r.id, m->backup_id, sizeof r.id);
    r.seq = m->seq;
    r.type = m->type;
    r.created_at = m->created_at;
    memcpy(r.base, m->base, sizeof r.base);
    r.files = m->totals.files;
    r.bytes = m->totals.bytes;
    r.stored_bytes = m->archive.size;
    memcpy(r.archive_sha256, m->archive.sha256, FB_SHA256_LEN);
    memmove(&idx->records[pos + 1], &idx->records[pos], (idx->n - pos) * sizeof r);
    idx->records[pos] = r;
    idx->n++;
    if (!idx->session_id[0])
        memcpy(idx->session_id, m->session_id, sizeof idx->session_id);
    return 0;
}

int fb_index_remove(fb_index *idx, const char *backup_id, fb_error *err)
{
    long i = fb_index_find(idx, backup_id);
    if (i < 0)
        return fb_error_set(err, FB_ENOTFOUND, "index of session %s: no backup %s",
                            idx->session_id, backup_id ? backup_id : "(null)");
    record_fini(&idx->records[i]);
    memmove(&idx->records[i], &idx->records[i + 1],
            (idx->n - (size_t)i - 1) * sizeof idx->records[0]);
    idx->n--;
    return 0;
}

const fb_index_record *fb_index_newest(const fb_index *idx)
{
    return idx->n ? &idx->records[idx->n - 1] : NULL;
}

const fb_index_record *fb_index_newest_full(const fb_index *idx)
{
    for (size_t i = idx->n; i > 0; i--)
        if (idx->records[i - 1].type == FB_BACKUP_FULL)
            return &idx->records[i - 1];
    return NULL;
}

uint64_t fb_index_next_seq(const fb_index *idx)
{
    return idx->n ? idx->records[idx->n - 1].seq + 1 : 1;
}

const char *fb_index_record_mismatch(const fb_index_record *rec, const fb_manifest *m)
{
    if (strcmp(rec->id, m->backup_id) != 0)
        return "id";
    if (rec->seq != m->seq)
        return "seq";
    if (rec->type != m->type)
        return "type";
    if (rec->created_at != m->created_at)
        return "created_at";
    if ((rec->note == NULL) != (m->note == NULL) || (rec->note && strcmp(rec->note, m->note) != 0))
        return "note";
    if (strcmp(rec->base, m->base) != 0)
        return "base";
    if (rec->files != m->totals.files)
        return "files";
    if (rec->bytes != m->totals.bytes)
        return "bytes";
    if (rec->stored_bytes != m->archive.size)
        return "stored_bytes";
    if (memcmp(rec->archive_sha256, m->archive.sha256, FB_SHA256_LEN) != 0)
        return "archive_sha256";
    return NULL;
}

bool fb_index_record_matches(const fb_index_record *rec, const fb_manifest *m)
{
    return fb_index_record_mismatch(rec, m) == NULL;
}

int fb_index_to_json(const fb_index *idx, char **out, size_t *out_len, fb_error *err)
{
    fb_json_writer w;
    fb_json_writer_init(&w);
    fb_json_begin_object(&w);
    fb_json_key(&w, "format");
    fb_json_i64(&w, FB_INDEX_FORMAT);
    fb_json_key(&w, "session_id");
    fb_json_string(&w, idx->session_id);
    fb_json_key(&w, "backups");
    fb_json_begin_array(&w);
    for (size_t i = 0; i < idx->n; i++) {
        const fb_index_record *r = &idx->records[i];
        fb_json_begin_object(&w);
        fb_json_key(&w, "id");
        fb_json_string(&w, r->id);
        fb_json_key(&w, "seq");
        fb_json_u64(&w, r->seq);
        fb_json_put_backup_origin(&w, r->type, r->created_at, r->note, r->base);
        fb_json_key(&w, "files");
        fb_json_u64(&w, r->files);
        fb_json_key(&w, "bytes");
        fb_json_u64(&w, r->bytes);
        fb_json_key(&w, "stored_bytes");
        fb_json_u64(&w, r->stored_bytes);
        fb_json_put_sha256(&w, "archive_sha256", r->archive_sha256);
        fb_json_end_object(&w);
    }
    fb_json_end_array(&w);
    fb_json_end_object(&w);
    char what[FB_SESSION_ID_MAX + 32];
    snprintf(what, sizeof what, "index of session %s", idx->session_id);
    return fb_json_writer_finish(&w, what, out, out_len, err);
}

static int parse_record(const fb_json_val *rv, fb_index_record *r, fb_error *err)
{
    int rc = fb_json_as_object(rv, 0, err);
    if (rc < 0)
        return rc;
    const char *s;
    if ((rc = fb_json_get_backup_id(rv, "id", 0, r->id, err)) < 0)
        return rc;
    if ((rc = fb_json_get_u64(rv, "seq", 0, 1, FB_JSON_INT_MAX, &r->seq, err)) < 0)
        return rc;
    if ((rc = fb_json_get_backup_type(rv, "id", r->id, &r->type, err)) < 0)
        return rc;
    if ((rc = fb_json_get_created_at(rv, &r->created_at, err)) < 0)
        return rc;
    if ((rc = fb_json_get_string(rv, "note", FB_JSON_NULLABLE, &s, err)) < 0)
        return rc;
    if (s && !(r->note = strdup(s)))
        return fb_error_set(err, FB_ENOMEM, "index: out of memory");
    if ((rc = fb_json_get_base(rv, r->type, r->base, err)) < 0)
        return rc;
    if ((rc = fb_json_get_u64(rv, "files", 0, 0, FB_JSON_INT_MAX, &r->files, err)) < 0 ||
        (rc = fb_json_get_u64(rv, "bytes", 0, 0, FB_JSON_INT_MAX, &r->bytes, err)) < 0 ||
        (rc = fb_json_get_u64(rv, "stored_bytes", 0, 0, FB_JSON_INT_MAX, &r->stored_bytes,
                              err)) < 0)
        return rc;
    return fb_json_get_sha256(rv, "archive_sha256", r->archive_sha256, err);
}

static int cmp_record_id(const void *a, const void *b, void *ctx)
{
    const fb_index_record *r = ctx;
    return strcmp(r[*(const size_t *)a].id, r[*(const size_t *)b].id);
}

/* Sorted, so a hostile index with many records stays O(n log n). */
static int check_unique_ids(const fb_index *idx, const fb_json_val *arr, fb_error *err)
{
    if (idx->n < 2)
        return 0;
    size_t *order = malloc(idx->n * sizeof *order);
    if (!order)
        return fb_error_set(err, FB_ENOMEM, "index: out of memory");
    for (size_t i = 0; i < idx->n; i++)
        order[i] = i;
    qsort_r(order, idx->n, sizeof *order, cmp_record_id, idx->records);
    int rc = 0;
    for (size_t k = 1; k < idx->n && !rc; k++) {
        size_t a = order[k - 1], b = order[k];
        if (strcmp(idx->records[a].id, idx->records[b].id) == 0) {
            size_t first = a < b ? a : b, second = a < b ? b : a;
            fb_json_val rv;
            fb_json_element(arr, NULL, second, &rv);
            rc = fb_json_fail_key(&rv, "id", err, "%s is listed twice (also backups[%zu])",
                                  idx->records[second].id, first);
        }
    }
    free(order);
    return rc;
}

static int parse_root(fb_index *idx, const fb_json_val *root, fb_error *err)
{
    int rc = fb_json_as_object(root, 0, err);
    if (rc < 0)
        return rc;
    int64_t format;
    if ((rc = fb_json_get_i64(root, "format", 0, INT64_MIN, INT64_MAX, &format, err)) < 0)
        return rc;
    if (format != FB_INDEX_FORMAT)
        /* Derived data: an index we cannot read is rebuilt, so corrupt. */
        return fb_json_fail_key(root, "format", err,
                                "unsupported index format %" PRId64 " (this tool reads %d)",
                                format, FB_INDEX_FORMAT);
    const char *sid;
    if ((rc = fb_json_get_session_id(root, &sid, err)) < 0)
        return rc;
    fb_index_init(idx, sid);

    fb_json_val arr;
    size_t count;
    if ((rc = fb_json_get_array(root, "backups", 0, &arr, &count, err)) < 0)
        return rc;
    if (count) {
        idx->records = calloc(count, sizeof *idx->records);
        if (!idx->records)
            return fb_error_set(err, FB_ENOMEM, "index: out of memory");
        idx->cap = count;
    }
    size_t i = 0;
    for (const cJSON *c = arr.node->child; c; c = c->next, i++) {
        fb_json_val rv;
        fb_json_element(&arr, c, i, &rv);
        idx->n = i + 1; /* so fini frees a half-filled record */
        fb_index_record *r = &idx->records[i];
        if ((rc = parse_record(&rv, r, err)) < 0)
            return rc;
        if (i > 0 && r->seq <= idx->records[i - 1].seq)
            return fb_json_fail_key(&rv, "seq", err,
                                    "%" PRIu64 " is not greater than the previous record's %" PRIu64,
                                    r->seq, idx->records[i - 1].seq);
    }
    return check_unique_ids(idx, &arr, err);
}

/* ---- the fast reading ----
 *
 * Why: a mount's first look at a session parses its index, and through
 * cJSON (a node and a malloc per value, a lookup per field) that was 40% of
 * the first lookup of a session with 100 backups (perf, bench/first_read):
 * ~7 us a backup in the daemon. The writer's text (fb_index_to_json) is
 * read here in one pass with no tree. Anything else (an escape in a
 * string, a key unknown, missing or repeated, a value of another kind, any
 * rule broken) gives the whole text to the strict reading, which then
 * accepts or refuses it as it always did. */

enum {
    R_ID,
    R_SEQ,
    R_TYPE,
    R_CREATED_AT,
    R_NOTE,
    R_BASE,
    R_FILES,
    R_BYTES,
    R_STORED_BYTES,
    R_ARCHIVE_SHA256,
    R_COUNT
};

static const char *const record_keys[R_COUNT] = {
    "id", "seq", "type", "created_at", "note", "base", "files", "bytes", "stored_bytes",
    "archive_sha256",
};

#define R_BIT(k) (1u << (k))
#define R_NUMBERS (R_BIT(R_SEQ) | R_BIT(R_FILES) | R_BIT(R_BYTES) | R_BIT(R_STORED_BYTES))
#define R_NULLABLE (R_BIT(R_NOTE) | R_BIT(R_BASE))
#define R_ALL ((1u << R_COUNT) - 1)

typedef struct raw_record {
    unsigned seen, null;
    const char *str[R_COUNT];
    size_t str_len[R_COUNT];
    uint64_t num[R_COUNT];
} raw_record;

static int record_key(const char *k, size_t n)
{
    for (int i = 0; i < R_COUNT; i++)
        if (strlen(record_keys[i]) == n && memcmp(record_keys[i], k, n) == 0)
            return i;
    return -1;
}

/* Copies a plain string of at most cap - 1 bytes, NUL-terminated. */
static bool plain_copy(const char *s, size_t n, char *out, size_t cap)
{
    if (n >= cap || memchr(s, '\0', n))
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* The members of the record at t[i]: each key once, each value of its kind.
 * The index past '}', or 0. */
static size_t read_record_members(const char *t, size_t len, size_t i, raw_record *r)
{
    if (i >= len || t[i] != '{')
        return 0;
    i = fb_json_plain_ws(t, len, i + 1);
    for (;;) {
        const char *k;
        size_t kn;
        if (!(i = fb_json_plain_string(t, len, i, &k, &kn)))
            return 0;
        int key = record_key(k, kn);
        if (key < 0 || (r->seen & R_BIT(key)))
            return 0;
        r->seen |= R_BIT(key);
        i = fb_json_plain_ws(t, len, i);
        if (i >= len || t[i] != ':')
            return 0;
        i = fb_json_plain_ws(t, len, i + 1);
        size_t past;
        if (R_NUMBERS & R_BIT(key)) {
            bool neg;
            past = fb_json_plain_integer(t, len, i, &r->num[key], &neg);
            if (neg)
                return 0;
        } else if ((R_NULLABLE & R_BIT(key)) && (past = fb_json_plain_null(t, len, i))) {
            r->null |= R_BIT(key);
        } else {
            past = fb_json_plain_string(t, len, i, &r->str[key], &r->str_len[key]);
        }
        if (!past)
            return 0;
        i = fb_json_plain_ws(t, len, past);
        if (i < len && t[i] == ',') {
            i = fb_json_plain_ws(t, len, i + 1);
            continue;
        }
        return i < len && t[i] == '}' ? i + 1 : 0;
    }
}

/* Every rule of parse_record, into *rec. False: leave it to the strict
 * reading. */
static bool record_rules(const raw_record *r, fb_index_record *rec)
{
    char buf[FB_SHA256_HEX_LEN + 1]; /* the longest value copied: type, time, digest */
    if (r->seen != R_ALL || r->num[R_SEQ] < 1)
        return false;
    if (!plain_copy(r->str[R_ID], r->str_len[R_ID], rec->id, sizeof rec->id) ||
        !fb_backup_id_is_valid(rec->id))
        return false;
    rec->seq = r->num[R_SEQ];
    if (!plain_copy(r->str[R_TYPE], r->str_len[R_TYPE], buf, sizeof buf) ||
        fb_backup_type_parse(buf, &rec->type) < 0 || fb_backup_id_type(rec->id) != rec->type)
        return false;
    if (!plain_copy(r->str[R_CREATED_AT], r->str_len[R_CREATED_AT], buf, sizeof buf) ||
        fb_rfc3339_parse(buf, &rec->created_at) < 0)
        return false;
    /* null is none; an empty string is refused (not a valid id) by the
     * strict reading too */
    if (!(r->null & R_BIT(R_BASE)) &&
        (r->str_len[R_BASE] == 0 ||
         !plain_copy(r->str[R_BASE], r->str_len[R_BASE], rec->base, sizeof rec->base) ||
         !fb_backup_base_is_allowed(rec->type, rec->base)))
        return false;
    rec->files = r->num[R_FILES];
    rec->bytes = r->num[R_BYTES];
    rec->stored_bytes = r->num[R_STORED_BYTES];
    return plain_copy(r->str[R_ARCHIVE_SHA256], r->str_len[R_ARCHIVE_SHA256], buf, sizeof buf) &&
           fb_sha256_from_hex(buf, rec->archive_sha256) == 0;
}

static int cmp_id_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool ids_unique(const fb_index *idx)
{
    if (idx->n < 2)
        return true;
    const char **ids = malloc(idx->n * sizeof *ids);
    if (!ids)
        return false; /* the strict reading will say it */
    for (size_t i = 0; i < idx->n; i++)
        ids[i] = idx->records[i].id;
    qsort(ids, idx->n, sizeof *ids, cmp_id_ptr);
    bool unique = true;
    for (size_t i = 1; i < idx->n && unique; i++)
        unique = strcmp(ids[i - 1], ids[i]) != 0;
    free(ids);
    return unique;
}

/* Reads the records of the array at t[i] ('['). The index past ']', or 0;
 * FB_ENOMEM as (size_t)-1. */
static size_t read_records(const char *t, size_t len, size_t i, fb_index *idx)
{
    if (i >= len || t[i] != '[')
        return 0;
    i = fb_json_plain_ws(t, len, i + 1);
    if (i < len && t[i] == ']')
        return i + 1;
    for (;;) {
        if (reserve(idx, NULL))
            return (size_t)-1;
        fb_index_record *rec = &idx->records[idx->n];
        memset(rec, 0, sizeof *rec);
        raw_record r;
        memset(&r, 0, sizeof r);
        size_t past = read_record_members(t, len, i, &r);
        if (!past || !record_rules(&r, rec))
            return 0;
        if (idx->n > 0 && rec->seq <= idx->records[idx->n - 1].seq)
            return 0;
        if (!(r.null & R_BIT(R_NOTE)) && !(rec->note = strndup(r.str[R_NOTE], r.str_len[R_NOTE])))
            return (size_t)-1;
        idx->n++;
        i = fb_json_plain_ws(t, len, past);
        if (i < len && t[i] == ',') {
            i = fb_json_plain_ws(t, len, i + 1);
            continue;
        }
        return i < len && t[i] == ']' ? i + 1 : 0;
    }
}

int fb_index_parse_fast(const char *t, size_t len, fb_index *idx)
{
    fb_index_init(idx, NULL);
    static const char *const root_keys[3] = {"format", "session_id", "backups"};
    size_t i = fb_json_plain_ws(t, len, 0);
    if (i >= len || t[i] != '{')
        return 0;
    i = fb_json_plain_ws(t, len, i + 1);
    for (int k = 0; k < 3; k++) {
        const char *s;
        size_t n;
        if (!(i = fb_json_plain_string(t, len, i, &s, &n)) || strlen(root_keys[k]) != n ||
            memcmp(root_keys[k], s, n) != 0)
            return 0;
        i = fb_json_plain_ws(t, len, i);
        if (i >= len || t[i] != ':')
            return 0;
        i = fb_json_plain_ws(t, len, i + 1);
        if (k == 0) {
            uint64_t format;
            bool neg;
            if (!(i = fb_json_plain_integer(t, len, i, &format, &neg)) || neg ||
                format != FB_INDEX_FORMAT)
                return 0;
        } else if (k == 1) {
            char sid[FB_SESSION_ID_MAX + 1];
            if (!(i = fb_json_plain_string(t, len, i, &s, &n)) ||
                !plain_copy(s, n, sid, sizeof sid) || fb_session_id_check(sid, NULL) < 0)
                return 0;
            fb_index_init(idx, sid);
        } else {
            size_t past = read_records(t, len, i, idx);
            if (past == (size_t)-1)
                return FB_ENOMEM;
            if (!(i = past))
                return 0;
        }
        i = fb_json_plain_ws(t, len, i);
        if (k < 2) {
            if (i >= len || t[i] != ',')
                return 0;
            i = fb_json_plain_ws(t, len, i + 1);
        }
    }
    if (i >= len || t[i] != '}' || fb_json_plain_ws(t, len, i + 1) != len)
        return 0;
    return ids_unique(idx) ? 1 : 0;
}

int fb_index_parse(const char *json, size_t len, const char *source, fb_index *out,
                   fb_error *err)
{
    return fb_index_parse_with(json, len, source, true, out, err);
}

int fb_index_parse_with(const char *json, size_t len, const char *source, bool fast,
                        fb_index *out, fb_error *err)
{
    fb_index_init(out, NULL);
    if (!source)
        source = FB_INDEX_NAME;
    if (fast && fb_json_check_text(json, len, FB_MANIFEST_SIZE_MAX, source, FB_ECORRUPT,
                                   NULL) == 0) {
        int rc = fb_index_parse_fast(json, len, out);
        if (rc == 1)
            return 0;
        fb_index_fini(out);
        fb_index_init(out, NULL);
        if (rc == FB_ENOMEM)
            return fb_error_set(err, FB_ENOMEM, "index: out of memory");
    }
    fb_json_doc *doc;
    int rc = fb_json_parse(json, len, FB_MANIFEST_SIZE_MAX, source, FB_ECORRUPT, &doc, err);
    if (rc < 0)
        return rc;
    fb_json_val root;
    fb_json_root(doc, &root);
    rc = parse_root(out, &root, err);
    fb_json_doc_free(doc);
    if (rc < 0) {
        fb_index_fini(out);
        return rc;
    }
    return 0;
}
