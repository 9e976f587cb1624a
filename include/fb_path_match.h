/* The one rule for matching a relative path of a session against a pattern
 * (SPEC "Backup": `incremental.include`; "Other commands": `recover
 * --path`): fnmatch(pattern, path, FNM_PATHNAME), so `*` never crosses a
 * '/'; a pattern ending in '/' names a directory and matches that
 * directory and everything below it (the path itself or any of its
 * ancestors matches the pattern without its '/'). The config's include
 * patterns and recover's --path patterns go through this one function, so
 * the two can never disagree on what "artifacts/" or "*.json" takes. */
#ifndef FB_PATH_MATCH_H
#define FB_PATH_MATCH_H

#include <stdbool.h>

/* Does relative path `path` (raw bytes, no leading "./" or '/') match
 * `pattern`? A path longer than FB_PATH_MAX (never stored) matches
 * nothing. */
bool fb_path_pattern_matches(const char *pattern, const char *path);

#endif
