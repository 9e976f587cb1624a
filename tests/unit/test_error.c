/* Unit tests of core/base/error.c: messages, prefixes, and the one mapping from
 * FB_E* codes to the exit statuses of both programs (SPEC "Exit codes"). */
#include "fbtest.h"
#include "fb_error.h"

static void test_exit_statuses(void)
{
    CHECK_EQ_INT(fb_error_exit_status(FB_OK), 0);
    CHECK_EQ_INT(fb_error_exit_status(FB_ECORRUPT), 1);
    CHECK_EQ_INT(fb_error_exit_status(FB_EINVAL), 2);
    CHECK_EQ_INT(fb_error_exit_status(FB_ENOTFOUND), 3);
    CHECK_EQ_INT(fb_error_exit_status(FB_EBUSY), 4);
    const int runtime[] = {FB_EIO, FB_ENOMEM, FB_EUNSUPPORTED, FB_EMISUSE, FB_EEXIST,
                           FB_ECHANGED, -12345};
    for (size_t i = 0; i < sizeof runtime / sizeof runtime[0]; i++)
        CHECK_EQ_INT(fb_error_exit_status(runtime[i]), 5);
}

static void test_messages(void)
{
    fb_error err;
    fb_error_clear(&err);
    CHECK_EQ_INT(fb_error_set(&err, FB_ECORRUPT, "%s: %d", "manifest.json", 7), FB_ECORRUPT);
    CHECK(strcmp(err.message, "manifest.json: 7") == 0 && err.code == FB_ECORRUPT);
    fb_error_prefix(&err, "S1/%s", "b");
    CHECK(strcmp(err.message, "S1/b: manifest.json: 7") == 0 && err.code == FB_ECORRUPT);
    CHECK_EQ_INT(fb_error_set_errno(&err, ENOSPC, "archive"), FB_EIO);
    CHECK(err.sys_errno == ENOSPC && strstr(err.message, "archive: ") == err.message);
    CHECK_EQ_INT(fb_error_from_errno(&err, ENOENT, "x"), FB_ENOTFOUND);
    CHECK(strcmp(fb_error_code_name(FB_EBUSY), "busy") == 0);
    CHECK_EQ_INT(fb_error_set(NULL, FB_EIO, "nobody reads this"), FB_EIO);
}

int main(void)
{
    test_exit_statuses();
    test_messages();
    return fbtest_failures ? 1 : 0;
}
