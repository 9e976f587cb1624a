/* Matching a session's relative paths against patterns
 * (include/fb_path_match.h): the rule shared by incremental.include and
 * recover --path. */
#include "fb_path_match.h"

#include <fnmatch.h>
#include <string.h>

#include "fb_types.h"

/* A pattern ending in '/' names a directory: it matches the directory and
 * everything below it, i.e. path itself or any ancestor of path. Each
 * ancestor is tried by cutting a copy of path at one of its slashes. */
static bool dir_pattern_matches(const char *pat, size_t plen, const char *path, size_t n)
{
    char dirpat[FB_PATH_MAX + 1];
    char copy[FB_PATH_MAX + 1];
    if (plen - 1 > FB_PATH_MAX)
        return false;
    memcpy(dirpat, pat, plen - 1);
    dirpat[plen - 1] = '\0';
    memcpy(copy, path, n + 1);
    for (size_t i = 0; i <= n; i++) {
        if (i < n && copy[i] != '/')
            continue;
        char saved = copy[i];
        copy[i] = '\0';
        bool hit = fnmatch(dirpat, copy, FNM_PATHNAME) == 0;
        copy[i] = saved;
        if (hit)
            return true;
    }
    return false;
}

bool fb_path_pattern_matches(const char *pattern, const char *path)
{
    if (!pattern || !path)
        return false;
    size_t n = strlen(path);
    if (n > FB_PATH_MAX)
        return false; /* never stored: the manifest refuses such paths */
    size_t plen = strlen(pattern);
    if (plen > 1 && pattern[plen - 1] == '/')
        return dir_pattern_matches(pattern, plen, path, n);
    return fnmatch(pattern, path, FNM_PATHNAME) == 0;
}
