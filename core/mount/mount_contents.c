/* The contents of one backup as the mount shows them (see
 * mount_contents_i.h): a manifest turned into a tree of nodes, with an open
 * addressing hash of paths to find each entry's parent in one pass. */
#include "mount_contents_i.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "fb_text.h"

typedef struct mt_key {
    const char *p;
    uint32_t len;
} mt_key;

typedef struct mt_hash {
    uint32_t *slots; /* node index or MT_NONE */
    size_t cap;      /* power of two */
    size_t used;
} mt_hash;

/* A per-process random seed, so that a manifest cannot be built to make
 * every path collide (paths come from disk: hostile). */
static uint64_t hash_seed;
static pthread_once_t hash_seed_once = PTHREAD_ONCE_INIT;

static void hash_seed_init(void)
{
    if (getrandom(&hash_seed, sizeof hash_seed, GRND_NONBLOCK) != (ssize_t)sizeof hash_seed)
        hash_seed = (uint64_t)(uintptr_t)&hash_seed ^ (uint64_t)time(NULL);
}

/* Eight bytes a step: paths are tens of bytes, and a byte-at-a-time hash
 * of every path and every parent prefix was a sixth of building the tree
 * of 2,000 entries. */
static uint64_t key_hash(const char *p, size_t len)
{
    uint64_t h = hash_seed ^ (len * 0x9e3779b97f4a7c15ULL);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 31;
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

/* The slot that holds p (its node in *found) or, when no slot does, the
 * empty slot where it would go (*found MT_NONE). */
static size_t hash_slot(const mt_hash *h, const mt_key *keys, const char *p, size_t len,
                        uint32_t *found)
{
    size_t mask = h->cap - 1;
    for (size_t i = key_hash(p, len) & mask;; i = (i + 1) & mask) {
        uint32_t n = h->slots[i];
        if (n == MT_NONE || (keys[n].len == len && memcmp(keys[n].p, p, len) == 0)) {
            *found = n;
            return i;
        }
    }
}

static uint32_t hash_find(const mt_hash *h, const mt_key *keys, const char *p, size_t len)
{
    uint32_t n;
    (void)hash_slot(h, keys, p, len, &n);
    return n;
}

static void hash_put(mt_hash *h, const mt_key *keys, uint32_t n)
{
    size_t mask = h->cap - 1;
    size_t i = key_hash(keys[n].p, keys[n].len) & mask;
    while (h->slots[i] != MT_NONE)
        i = (i + 1) & mask;
    h->slots[i] = n;
    h->used++;
}

static int hash_init(mt_hash *h, size_t want)
{
    size_t cap = 16;
    while ((want + 1) * 2 > cap)
        cap *= 2;
    h->slots = malloc(cap * sizeof *h->slots);
    if (!h->slots)
        return FB_ENOMEM;
    memset(h->slots, 0xff, cap * sizeof *h->slots);
    h->cap = cap;
    h->used = 0;
    return 0;
}

/* Keeps the load factor at most 1/2. */
static int hash_reserve(mt_hash *h, const mt_key *keys, size_t want)
{
    if ((want + 1) * 2 <= h->cap)
        return 0;
    size_t cap = h->cap ? h->cap : 16;
    while ((want + 1) * 2 > cap)
        cap *= 2;
    uint32_t *old = h->slots;
    size_t old_cap = h->cap;
    h->slots = malloc(cap * sizeof *h->slots);
    if (!h->slots) {
        h->slots = old;
        return FB_ENOMEM;
    }
    memset(h->slots, 0xff, cap * sizeof *h->slots);
    h->cap = cap;
    h->used = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] != MT_NONE)
            hash_put(h, keys, old[i]);
    free(old);
    return 0;
}

bool mt_node_is_dir(const mt_contents *c, uint32_t n)
{
    uint32_t e = c->nodes[n].entry;
    return e == MT_NONE || c->m.entries[e].meta.type == FB_ENTRY_DIR;
}

static int cmp_children(const void *a, const void *b, void *ctx)
{
    const mt_node *nodes = ctx;
    const mt_node *x = &nodes[*(const uint32_t *)a], *y = &nodes[*(const uint32_t *)b];
    if (x->parent != y->parent)
        return x->parent < y->parent ? -1 : 1;
    size_t l = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, l);
    if (c)
        return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* What the allocator takes for a request of n bytes: glibc's 16-byte
 * rounding with its 8-byte header and 32-byte minimum, close enough for
 * others. Small strings cost about twice their length, which a count of
 * string bytes alone would miss. */
static uint64_t heap_cost(uint64_t n)
{
    uint64_t chunk = (n + 8 + 15) & ~(uint64_t)15;
    return chunk < 32 ? 32 : chunk;
}

/* What string s costs on its own: nothing when absent or in the block. */
static uint64_t string_cost(const fb_manifest *m, const char *s)
{
    return s && !fb_manifest_in_strings(m, s) ? heap_cost(strlen(s) + 1) : 0;
}

uint64_t mt_contents_bytes(const mt_contents *c)
{
    const fb_manifest *m = &c->m;
    uint64_t total = heap_cost(sizeof *c);
    /* The records in use: spare capacity is untouched, so not resident. */
    total += heap_cost((uint64_t)m->n_entries * sizeof *m->entries);
    /* Strings in the block are counted with it, once. */
    if (m->strings)
        total += heap_cost(m->strings_len);
    for (size_t i = 0; i < m->n_entries; i++) {
        total += string_cost(m, m->entries[i].path);
        total += string_cost(m, m->entries[i].target);
    }
    total += string_cost(m, m->note);
    total += string_cost(m, m->tool_version);
    /* The node array keeps the headroom mt_contents_build gave it. */
    total += heap_cost(((uint64_t)c->n_nodes + 16) * sizeof *c->nodes);
    total += heap_cost((uint64_t)(c->n_nodes ? c->n_nodes : 1) * sizeof *c->children);
    for (uint32_t i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].entry == MT_NONE)
            total += heap_cost((uint64_t)c->nodes[i].name_len + 1);
    return total + mt_contents_view_bytes(c);
}

uint64_t mt_contents_view_bytes(const mt_contents *c)
{
    uint64_t total = 0;
    size_t n = c->m.n_entries;
    if (c->sources)
        total += heap_cost((uint64_t)c->n_sources * sizeof *c->sources);
    if (c->entry_source)
        total += heap_cost((uint64_t)n * sizeof *c->entry_source);
    if (c->data_paths) {
        total += heap_cost((uint64_t)n * sizeof *c->data_paths);
        for (size_t i = 0; i < n; i++)
            if (c->data_paths[i])
                total += heap_cost(strlen(c->data_paths[i]) + 1);
    }
    return total;
}

char *mt_entry_data_path(const mt_contents *c, uint32_t e)
{
    if (c->data_paths && c->data_paths[e])
        return strdup(c->data_paths[e]);
    const char *p = c->m.entries[e].path;
    const char *slash = c->data_in_parent ? strrchr(p, '/') : NULL;
    return slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
}

void mt_contents_free(mt_contents *c)
{
    if (!c)
        return;
    if (c->nodes)
        for (uint32_t i = 0; i < c->n_nodes; i++)
            if (c->nodes[i].entry == MT_NONE)
                free((char *)c->nodes[i].name);
    free(c->nodes);
    free(c->children);
    if (c->data_paths)
        for (size_t i = 0; i < c->m.n_entries; i++)
            free(c->data_paths[i]);
    free(c->data_paths);
    free(c->entry_source);
    free(c->sources);
    fb_manifest_fini(&c->m);
    free(c);
}

static int grow_nodes(mt_contents *c, mt_key **keys, size_t *cap)
{
    size_t ncap = *cap * 2;
    if (ncap > MT_MAX_NODES)
        ncap = MT_MAX_NODES;
    if (ncap <= *cap)
        return FB_ECORRUPT;
    mt_node *n = realloc(c->nodes, ncap * sizeof *n);
    if (!n)
        return FB_ENOMEM;
    c->nodes = n;
    mt_key *k = realloc(*keys, ncap * sizeof *k);
    if (!k)
        return FB_ENOMEM;
    *keys = k;
    *cap = ncap;
    return 0;
}

/* Turns the manifest's flat entry list into directories with sorted
 * children. The manifest passed strict parsing, but everything that would
 * break the tree is checked again here: a name inside a non-directory, a
 * duplicate path, a hardlink to something that is not an earlier file. */
/* The state of one mt_contents_build: paths as keys (borrowed from the
 * manifest, or prefixes of them for implied directories), found through a
 * hash table or, for a manifest in tree order, by binary search. */
typedef struct tree_builder {
    mt_contents *c;
    const char *name; /* for messages */
    mt_key *keys;
    size_t cap;
    mt_hash h;
    bool in_tree_order; /* nodes are the entries alone, in tree order: no hash */
} tree_builder;

/* A path no tree can hold: empty, too long, absolute or ending in '/'
 * (what else a path must not be, the manifest's rules refuse). */
static bool path_unusable(const char *p, size_t len)
{
    return len == 0 || len > FB_PATH_MAX || p[0] == '/' || p[len - 1] == '/';
}

/* The node whose path is p[0..len), or MT_NONE. */
static uint32_t node_find(const tree_builder *b, const char *p, size_t len)
{
    if (!b->in_tree_order)
        return hash_find(&b->h, b->keys, p, len);
    uint32_t lo = 0, hi = b->c->n_nodes;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int r = fb_manifest_tree_cmp(b->keys[mid].p, b->keys[mid].len, p, len);
        if (r == 0)
            return mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return MT_NONE;
}

/* Nodes, names and parents for a manifest as the writer writes it: in tree
 * order (fb_manifest_tree_cmp, strictly, so no path twice), every parent an
 * entry and a directory. Then an entry's parent is the top of a stack of
 * the entries above it, and no path is hashed: the hash table's two passes
 * were two thirds of building the tree of 2,000 entries. Returns true when
 * done; false when the manifest is not such (nothing is kept: the caller
 * builds with the hash, which also words any error). */
static bool link_in_tree_order(tree_builder *b)
{
    mt_contents *c = b->c;
    uint32_t n = (uint32_t)c->m.n_entries;
    uint32_t *stack = malloc((n ? n : 1) * sizeof *stack);
    if (!stack)
        return false;
    uint32_t depth = 0;
    bool ok = true;
    for (uint32_t i = 0; i < n && ok; i++) {
        const char *p = c->m.entries[i].path;
        size_t len = strlen(p);
        if (path_unusable(p, len) ||
            (i > 0 && fb_manifest_tree_cmp(b->keys[i - 1].p, b->keys[i - 1].len, p, len) >= 0)) {
            ok = false;
            break;
        }
        b->keys[i] = (mt_key){p, (uint32_t)len};
        /* The entries left on the stack are those p lies below. */
        while (depth > 0) {
            const mt_key *k = &b->keys[stack[depth - 1]];
            if (k->len < len && p[k->len] == '/' && memcmp(k->p, p, k->len) == 0)
                break;
            depth--;
        }
        const char *slash = memrchr(p, '/', len);
        uint32_t parent = MT_TOP;
        if (slash) {
            uint32_t top = depth ? stack[depth - 1] : MT_NONE;
            /* An implied parent, or one that is not a directory. */
            ok = top != MT_NONE && b->keys[top].len == (uint32_t)(slash - p) &&
                 c->m.entries[top].meta.type == FB_ENTRY_DIR;
            parent = top;
        }
        const char *nm = slash ? slash + 1 : p;
        c->nodes[i] = (mt_node){.name = nm, .name_len = (uint32_t)(p + len - nm), .entry = i,
                                .parent = parent, .target = i};
        stack[depth++] = i;
    }
    free(stack);
    if (ok)
        c->n_nodes = n;
    return ok;
}

/* One node per manifest entry, each path once. */
static int index_paths(tree_builder *b, fb_error *err)
{
    mt_contents *c = b->c;
    size_t n = c->m.n_entries;
    c->n_nodes = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const fb_manifest_entry *e = &c->m.entries[i];
        size_t len = strlen(e->path);
        if (path_unusable(e->path, len))
            return fb_error_set(err, FB_ECORRUPT, "%s: entry %zu has a bad path", b->name, i);
        c->nodes[i] = (mt_node){.entry = (uint32_t)i, .target = (uint32_t)i};
        b->keys[i] = (mt_key){e->path, (uint32_t)len};
        uint32_t seen;
        size_t slot = hash_slot(&b->h, b->keys, e->path, len, &seen);
        if (seen != MT_NONE) {
            char eb[600];
            return fb_error_set(err, FB_ECORRUPT, "%s: path '%s' appears twice", b->name,
                                fb_path_escape_n(e->path, len, eb, sizeof eb));
        }
        b->h.slots[slot] = (uint32_t)i; /* hashed once, found and placed */
        b->h.used++;
    }
    return 0;
}

/* The parent of node i, appended as an implied directory when the manifest
 * does not list it (it is then resolved in turn by the caller's loop). */
static int parent_of(tree_builder *b, uint32_t i, uint32_t plen, uint32_t *out, fb_error *err)
{
    mt_contents *c = b->c;
    const char *p = b->keys[i].p;
    uint32_t parent = hash_find(&b->h, b->keys, p, plen);
    if (parent == MT_NONE) {
        int rc;
        if (c->n_nodes == b->cap && (rc = grow_nodes(c, &b->keys, &b->cap)) != 0)
            return fb_error_set(err, rc, "%s: cannot grow the tree", b->name);
        if (hash_reserve(&b->h, b->keys, c->n_nodes + 1) != 0)
            return fb_error_set(err, FB_ENOMEM, "%s: out of memory", b->name);
        parent = c->n_nodes++;
        c->nodes[parent] = (mt_node){.entry = MT_NONE, .target = parent};
        b->keys[parent] = (mt_key){p, plen};
        hash_put(&b->h, b->keys, parent);
    }
    if (!mt_node_is_dir(c, parent)) {
        char eb[600], pb[600];
        return fb_error_set(err, FB_ECORRUPT, "%s: '%s' is inside '%s', which is not a directory",
                            b->name, fb_path_escape_n(p, b->keys[i].len, eb, sizeof eb),
                            fb_path_escape_n(p, plen, pb, sizeof pb));
    }
    *out = parent;
    return 0;
}

/* Names and parents; implied directories are appended and resolved in turn. */
static int link_parents(tree_builder *b, fb_error *err)
{
    mt_contents *c = b->c;
    for (uint32_t i = 0; i < c->n_nodes; i++) {
        const char *p = b->keys[i].p;
        uint32_t len = b->keys[i].len;
        const char *slash = memrchr(p, '/', len);
        const char *nm = slash ? slash + 1 : p;
        uint32_t nlen = (uint32_t)(p + len - nm);
        if (nlen == 0 || (slash && slash == p)) {
            char eb[600];
            return fb_error_set(err, FB_ECORRUPT, "%s: entry '%s' has an empty name", b->name,
                                fb_path_escape_n(p, len, eb, sizeof eb));
        }
        if (c->nodes[i].entry == MT_NONE) {
            /* Implied directory: its key is a prefix of another path, not
             * NUL-terminated, so it gets its own copy of the name. */
            char *copy = strndup(nm, nlen);
            if (!copy)
                return fb_error_set(err, FB_ENOMEM, "%s: out of memory", b->name);
            nm = copy;
        }
        c->nodes[i].name = nm;
        c->nodes[i].name_len = nlen;
        /* parent_of may move c->nodes (it grows the array): no pointer
         * into it is held across the call. */
        uint32_t parent = MT_TOP;
        int rc;
        if (slash && (rc = parent_of(b, i, (uint32_t)(slash - p), &parent, err)))
            return rc;
        c->nodes[i].parent = parent;
    }
    return 0;
}

/* Link counts: 2 for a directory plus one per subdirectory, 1 for a file
 * plus one per hardlink to it; hardlinks resolved to their file. */
static int count_links(tree_builder *b, fb_error *err)
{
    mt_contents *c = b->c;
    for (uint32_t i = 0; i < c->n_nodes; i++)
        c->nodes[i].nlink = mt_node_is_dir(c, i) ? 2 : 1;
    for (uint32_t i = 0; i < c->n_nodes; i++) {
        mt_node *nd = &c->nodes[i];
        if (nd->entry != MT_NONE && c->m.entries[nd->entry].meta.type == FB_ENTRY_HARDLINK) {
            const char *link = c->m.entries[nd->entry].target;
            uint32_t tg = link ? node_find(b, link, strlen(link)) : MT_NONE;
            if (tg == MT_NONE || c->nodes[tg].entry == MT_NONE ||
                c->m.entries[c->nodes[tg].entry].meta.type != FB_ENTRY_FILE) {
                const char *hp = c->m.entries[nd->entry].path;
                char eb[600];
                return fb_error_set(err, FB_ECORRUPT, "%s: hardlink '%s' does not link to a file",
                                    b->name, fb_path_escape_n(hp, strlen(hp), eb, sizeof eb));
            }
            nd->target = tg;
            if (c->nodes[tg].nlink < UINT32_MAX)
                c->nodes[tg].nlink++;
        }
        if (mt_node_is_dir(c, i)) {
            if (nd->parent == MT_TOP)
                c->top_subdirs++;
            else if (c->nodes[nd->parent].nlink < UINT32_MAX)
                c->nodes[nd->parent].nlink++;
        }
    }
    return 0;
}

/* Where node i's parent sorts among the parents: its index, or n_nodes for
 * the top level. */
static uint32_t parent_slot(const mt_contents *c, uint32_t i)
{
    uint32_t p = c->nodes[i].parent;
    return p == MT_TOP || p >= c->n_nodes ? c->n_nodes : p;
}

/* Every directory's children as one sorted run of c->children. */
static int sort_children(mt_contents *c, const char *name, fb_error *err)
{
    c->children = malloc((c->n_nodes ? c->n_nodes : 1) * sizeof *c->children);
    if (!c->children)
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    /* By parent with a counting sort (stable: node order kept within a
     * parent), then by name within each parent, which a manifest in tree
     * order already has: only a run out of order is sorted. A qsort of
     * every node was 7% of loading 100,000 entries. Top-level nodes
     * (MT_TOP) go last, as cmp_children puts them. */
    uint32_t n = c->n_nodes;
    uint32_t *start = calloc((size_t)n + 2, sizeof *start);
    if (!start) {
        free(c->children);
        c->children = NULL;
        return fb_error_set(err, FB_ENOMEM, "%s: out of memory", name);
    }
    for (uint32_t i = 0; i < n; i++)
        start[parent_slot(c, i) + 1]++;
    for (uint32_t k = 0; k <= n; k++)
        start[k + 1] += start[k];
    for (uint32_t i = 0; i < n; i++)
        c->children[start[parent_slot(c, i)]++] = i;
    free(start);
    for (uint32_t i = 0; i < n;) {
        uint32_t parent = c->nodes[c->children[i]].parent;
        uint32_t j = i + 1;
        bool sorted = true;
        for (; j < n && c->nodes[c->children[j]].parent == parent; j++)
            sorted = sorted && cmp_children(&c->children[j - 1], &c->children[j], c->nodes) <= 0;
        if (!sorted)
            qsort_r(c->children + i, j - i, sizeof *c->children, cmp_children, c->nodes);
        i = j;
    }
    for (uint32_t i = 0; i < c->n_nodes;) {
        uint32_t parent = c->nodes[c->children[i]].parent;
        uint32_t j = i;
        while (j < c->n_nodes && c->nodes[c->children[j]].parent == parent)
            j++;
        if (parent == MT_TOP) {
            c->top_start = i;
            c->top_count = j - i;
        } else {
            c->nodes[parent].child_start = i;
            c->nodes[parent].child_count = j - i;
        }
        i = j;
    }
    return 0;
}

int mt_contents_build(mt_contents *c, const char *name, fb_error *err)
{
    pthread_once(&hash_seed_once, hash_seed_init);
    size_t n = c->m.n_entries;
    if (n >= MT_MAX_NODES)
        return fb_error_set(err, FB_ECORRUPT, "%s: too many entries (%zu)", name, n);
    tree_builder b = {.c = c, .name = name, .cap = n + 16};
    c->nodes = malloc(b.cap * sizeof *c->nodes);
    b.keys = malloc(b.cap * sizeof *b.keys);
    int rc;
    if (!c->nodes || !b.keys)
        rc = fb_error_set(err, FB_ENOMEM, "%s: out of memory building the tree", name);
    else if ((b.in_tree_order = link_in_tree_order(&b)))
        rc = 0;
    else if (hash_init(&b.h, n) != 0)
        rc = fb_error_set(err, FB_ENOMEM, "%s: out of memory building the tree", name);
    else if ((rc = index_paths(&b, err)) == 0)
        rc = link_parents(&b, err);
    if (rc == 0 && (rc = count_links(&b, err)) == 0)
        rc = sort_children(c, name, err);
    free(b.keys);
    free(b.h.slots);
    return rc;
}

uint32_t mt_child_find(const mt_contents *c, uint32_t start, uint32_t count, const char *nm)
{
    size_t len = strlen(nm);
    uint32_t lo = start, hi = start + count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const mt_node *x = &c->nodes[c->children[mid]];
        size_t l = x->name_len < len ? x->name_len : len;
        int r = memcmp(x->name, nm, l);
        if (r == 0)
            r = x->name_len < len ? -1 : x->name_len > len;
        if (r == 0)
            return c->children[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return MT_NONE;
}
