/* Tests of the session lock: a second holder (another process, or another
 * open in this one) is refused with a message naming the holder; waiting
 * succeeds once the holder exits or is killed; a .lock planted as a symlink
 * is refused without touching its target. */
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "fb_lock.h"
#include "fbtest.h"

static int open_dir(const char *path)
{
    return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Forks a child that takes the lock, writes one byte to the pipe, then
 * holds it for hold_ms (or forever when hold_ms < 0) and exits. Returns the
 * pid once the child holds the lock. */
static pid_t spawn_holder(const char *dir, int hold_ms)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        int dfd = open_dir(dir);
        fb_lock lk;
        fb_error err;
        if (fb_lock_acquire(dfd, "S", 5, NULL, NULL, &lk, &err) != 0)
            _exit(3);
        if (write(p[1], "x", 1) != 1)
            _exit(4);
        if (hold_ms < 0)
            for (;;)
                pause();
        struct timespec ts = {hold_ms / 1000, (long)(hold_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        _exit(0);
    }
    close(p[1]);
    char c;
    ssize_t n = read(p[0], &c, 1);
    close(p[0]);
    if (n != 1) {
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static void test_acquire_writes_holder(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    fb_lock lk;
    fb_error err;
    REQUIRE(fb_lock_acquire(dfd, "S", 0, NULL, NULL, &lk, &err) == 0);
    CHECK(lk.fd >= 0);
    char path[4200], buf[256];
    snprintf(path, sizeof path, "%s/.lock", dir);
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    CHECK_EQ_INT(st.st_mode & 07777, 0600);
    int fd = open(path, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    REQUIRE(n > 0);
    buf[n] = '\0';
    char expect[64];
    snprintf(expect, sizeof expect, "%ld ", (long)getpid());
    CHECK(strncmp(buf, expect, strlen(expect)) == 0);
    CHECK(buf[n - 1] == '\n');

    /* a second open file description in this process conflicts too */
    fb_lock lk2;
    CHECK_EQ_INT(fb_lock_try(dfd, "S", &lk2, &err), FB_EBUSY);
    CHECK(lk2.fd == -1);
    fb_lock_release(&lk);
    CHECK(lk.fd == -1);
    fb_lock_release(&lk); /* releasing twice is harmless */
    fb_lock_release(NULL);
    CHECK_EQ_INT(fb_lock_try(dfd, "S", &lk2, &err), 0);
    fb_lock_release(&lk2);
    close(dfd);
    fbtest_rmtree(dir);
}

static void test_busy_names_holder(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    pid_t child = spawn_holder(dir, -1);
    REQUIRE(child > 0);
    fb_lock lk;
    fb_error err;
    fb_error_clear(&err);
    double t0 = now_s();
    CHECK_EQ_INT(fb_lock_try(dfd, "S", &lk, &err), FB_EBUSY);
    CHECK(now_s() - t0 < 0.5);
    char expect[128];
    snprintf(expect, sizeof expect, "session S is busy: locked by pid %ld on host ", (long)child);
    CHECK(strncmp(err.message, expect, strlen(expect)) == 0);
    CHECK(strstr(err.message, "(waited 0 s)") != NULL);

    /* a bounded wait gives up after about that long */
    t0 = now_s();
    CHECK_EQ_INT(fb_lock_acquire(dfd, "S", 0.3, NULL, NULL, &lk, &err), FB_EBUSY);
    double waited = now_s() - t0;
    CHECK(waited >= 0.29 && waited < 1.5);
    CHECK(strstr(err.message, "(waited 0.3 s)") != NULL);

    /* SIGKILL of the holder frees the lock at once (flock dies with it) */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    CHECK_EQ_INT(fb_lock_try(dfd, "S", &lk, &err), 0);
    fb_lock_release(&lk);
    close(dfd);
    fbtest_rmtree(dir);
}

static void test_wait_succeeds_after_holder_exits(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    pid_t child = spawn_holder(dir, 400);
    REQUIRE(child > 0);
    fb_lock lk;
    fb_error err;
    double t0 = now_s();
    int rc = fb_lock_acquire(dfd, "S", 10, NULL, NULL, &lk, &err);
    double waited = now_s() - t0;
    CHECK_EQ_INT(rc, 0);
    CHECK(waited >= 0.2 && waited < 5);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the file now names us */
    char path[4200], buf[128];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    REQUIRE(n > 0);
    buf[n] = '\0';
    CHECK(atol(buf) == (long)getpid());
    fb_lock_release(&lk);
    close(dfd);
    fbtest_rmtree(dir);
}

/* What the waiting callback saw, and when. */
typedef struct waiting_seen {
    int calls;
    char session[32];
    char holder[128];
    double wait_seconds;
    double at;
} waiting_seen;

static void on_waiting(void *ctx, const fb_lock_waiting *w)
{
    waiting_seen *s = ctx;
    s->calls++;
    snprintf(s->session, sizeof s->session, "%s", w->session_id);
    snprintf(s->holder, sizeof s->holder, "%s", w->holder);
    s->wait_seconds = w->wait_seconds;
    s->at = now_s();
}

/* A busy lock that will be waited for is announced once, at once, naming
 * the holder; a free lock, or a single try, is not. */
static void test_waiting_is_told_at_once(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    fb_lock lk;
    fb_error err;
    waiting_seen seen;
    memset(&seen, 0, sizeof seen);
    REQUIRE(fb_lock_acquire(dfd, "S", 10, on_waiting, &seen, &lk, &err) == 0);
    CHECK_EQ_INT(seen.calls, 0);
    fb_lock_release(&lk);

    pid_t child = spawn_holder(dir, 600);
    REQUIRE(child > 0);
    CHECK_EQ_INT(fb_lock_acquire(dfd, "S", 0, on_waiting, &seen, &lk, &err), FB_EBUSY);
    CHECK_EQ_INT(seen.calls, 0);
    double t0 = now_s();
    int rc = fb_lock_acquire(dfd, "S", 10, on_waiting, &seen, &lk, &err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(seen.calls, 1);
    CHECK(seen.at - t0 < 0.2);
    CHECK(strcmp(seen.session, "S") == 0);
    char expect[64];
    snprintf(expect, sizeof expect, "pid %ld on host ", (long)child);
    CHECK(strncmp(seen.holder, expect, strlen(expect)) == 0);
    CHECK(seen.wait_seconds == 10);
    fb_lock_release(&lk);
    waitpid(child, NULL, 0);
    close(dfd);
    fbtest_rmtree(dir);
}

/* The lock file's text is untrusted: garbage is not echoed. */
static void test_holder_text_is_sanitised(void)
{
    char *dir = fbtest_tempdir();
    int dfd = open_dir(dir);
    pid_t child = spawn_holder(dir, -1);
    REQUIRE(child > 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_WRONLY | O_TRUNC);
    const char *evil = "12 \x1b[31mhost\nmore\n";
    CHECK(write(fd, evil, strlen(evil)) == (ssize_t)strlen(evil));
    close(fd);
    fb_lock lk;
    fb_error err;
    CHECK_EQ_INT(fb_lock_try(dfd, "S", &lk, &err), FB_EBUSY);
    CHECK(strchr(err.message, '\x1b') == NULL);
    CHECK(strstr(err.message, "locked by another process") != NULL);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(dfd);
    fbtest_rmtree(dir);
}

static void test_symlink_lock_refused(void)
{
    char *dir = fbtest_tempdir();
    char target[4200], link[4200];
    snprintf(target, sizeof target, "%s/victim", dir);
    snprintf(link, sizeof link, "%s/.lock", dir);
    int fd = open(target, O_WRONLY | O_CREAT, 0644);
    REQUIRE(fd >= 0);
    CHECK(write(fd, "untouched", 9) == 9);
    close(fd);
    REQUIRE(symlink(target, link) == 0);
    int dfd = open_dir(dir);
    fb_lock lk;
    fb_error err;
    fb_error_clear(&err);
    int rc = fb_lock_acquire(dfd, "S", 0, NULL, NULL, &lk, &err);
    CHECK(rc < 0 && rc != FB_EBUSY);
    CHECK(lk.fd == -1);
    CHECK(strstr(err.message, "S/.lock is a symlink") != NULL);
    char buf[32];
    fd = open(target, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    CHECK(n == 9 && memcmp(buf, "untouched", 9) == 0);

    /* a dangling symlink is refused as well and creates nothing */
    REQUIRE(unlink(link) == 0);
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/created-through-link", dir);
    REQUIRE(symlink(missing, link) == 0);
    CHECK(fb_lock_acquire(dfd, "S", 0, NULL, NULL, &lk, &err) < 0);
    CHECK(access(missing, F_OK) != 0);
    close(dfd);
    fbtest_rmtree(dir);
}

int main(void)
{
    RUN_TEST(test_acquire_writes_holder);
    RUN_TEST(test_busy_names_holder);
    RUN_TEST(test_wait_succeeds_after_holder_exits);
    RUN_TEST(test_waiting_is_told_at_once);
    RUN_TEST(test_holder_text_is_sanitised);
    RUN_TEST(test_symlink_lock_refused);
    FBTEST_EXIT();
}
