/* id_test.c -- job ids: unique across a million draws, across threads and
 * across fork; time-ordered prefix; hex round trip; bad hex rejected. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice/id.h"
#include "testlib.h"

static int s_cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, SL_ID_LEN);
}

/* Sort n ids and fail on the first repeated one. */
static void s_assert_unique(uint8_t (*ids)[SL_ID_LEN], size_t n)
{
    qsort(ids, n, SL_ID_LEN, s_cmp_id);
    for (size_t i = 1; i < n; i++)
        if (memcmp(ids[i - 1], ids[i], SL_ID_LEN) == 0)
            fail_msg("duplicate id at %zu of %zu", i, n);
}

static void test_id__million_ids_are_unique(void **state)
{
    (void)state;
    const size_t n = 1000000;
    uint8_t (*ids)[SL_ID_LEN] = malloc(n * SL_ID_LEN);
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++)
        SL_ASSERT_OK(sl_id_new(ids[i]));
    s_assert_unique(ids, n);
    free(ids);
}

#define NTHREADS 4
#define PER_THREAD 100000

static uint8_t s_thread_ids[NTHREADS * PER_THREAD][SL_ID_LEN];

static void *s_gen(void *arg)
{
    size_t t = (size_t)arg;
    for (size_t i = 0; i < PER_THREAD; i++)
        if (sl_id_new(s_thread_ids[t * PER_THREAD + i]) != SL_OK)
            return (void *)1;
    return NULL;
}

static void test_id__threads_draw_unique_ids(void **state)
{
    (void)state;
    pthread_t th[NTHREADS];
    for (size_t t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, s_gen, (void *)t), 0);
    for (size_t t = 0; t < NTHREADS; t++) {
        void *ret;
        pthread_join(th[t], &ret);
        assert_null(ret);
    }
    s_assert_unique(s_thread_ids, NTHREADS * PER_THREAD);
}

static void test_id__fork_child_does_not_repeat_parent(void **state)
{
    (void)state;
    uint8_t warm[SL_ID_LEN], mine[SL_ID_LEN], child[SL_ID_LEN];
    SL_ASSERT_OK(sl_id_new(warm));      /* parent's generator is seeded */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t id[SL_ID_LEN];
        int ok = sl_id_new(id) == SL_OK && write(fds[1], id, SL_ID_LEN) == SL_ID_LEN;
        _exit(ok ? 0 : 1);
    }
    SL_ASSERT_OK(sl_id_new(mine));
    assert_int_equal(read(fds[0], child, SL_ID_LEN), SL_ID_LEN);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    close(fds[1]);
    /* the random part, not just the clock, must differ */
    assert_memory_not_equal(mine + 6, child + 6, SL_ID_LEN - 6);
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_id__layout_is_uuidv7_with_time_prefix(void **state)
{
    (void)state;
    uint8_t a[SL_ID_LEN], b[SL_ID_LEN];
    int64_t before = s_now_ms();
    SL_ASSERT_OK(sl_id_new(a));
    int64_t after = s_now_ms();
    assert_int_equal(a[6] >> 4, 7);             /* version */
    assert_int_equal(a[8] >> 6, 2);             /* variant 10 */
    assert_true(sl_id_time_ms(a) >= before && sl_id_time_ms(a) <= after);

    struct timespec two_ms = {0, 2000000};
    nanosleep(&two_ms, NULL);
    SL_ASSERT_OK(sl_id_new(b));
    assert_true(memcmp(a, b, SL_ID_LEN) < 0);   /* later ids sort after */
}

static void test_id__hex_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        uint8_t id[SL_ID_LEN], back[SL_ID_LEN];
        char hex[SL_ID_HEX_LEN + 1];
        SL_ASSERT_OK(sl_id_new(id));
        assert_ptr_equal(sl_id_to_hex(id, hex), hex);
        assert_int_equal(strlen(hex), SL_ID_HEX_LEN);
        for (int k = 0; k < SL_ID_HEX_LEN; k++)
            assert_non_null(strchr("0123456789abcdef", hex[k]));
        SL_ASSERT_OK(sl_id_from_hex(hex, back));
        assert_memory_equal(id, back, SL_ID_LEN);
    }
    const uint8_t known[SL_ID_LEN] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                      0x00, 0xff, 0x10, 0x0f, 0xa5, 0x5a, 0x7e, 0xe7};
    char hex[SL_ID_HEX_LEN + 1];
    assert_string_equal(sl_id_to_hex(known, hex), "0123456789abcdef00ff100fa55a7ee7");
    uint8_t back[SL_ID_LEN];
    SL_ASSERT_OK(sl_id_from_hex("0123456789ABCDEF00FF100FA55A7EE7", back));
    assert_memory_equal(known, back, SL_ID_LEN);
}

static void test_id__from_hex_rejects_bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "0123456789abcdef00ff100fa55a7ee",      /* 31 */
        "0123456789abcdef00ff100fa55a7ee70",    /* 33 */
        "0123456789abcdef00ff100fa55a7eeg",     /* g */
        "0123456789abcdef00ff100fa55a7ee ",
        " 0123456789abcdef00ff100fa55a7ee",
        "0x23456789abcdef00ff100fa55a7ee7",
        "0123456789abcdef-0ff100fa55a7ee7",
        "0123456789abcdef00ff100fa55a7ee7\n",
    };
    uint8_t out[SL_ID_LEN];
    uint8_t canary[SL_ID_LEN];
    memset(out, 0xAA, sizeof out);
    memcpy(canary, out, sizeof out);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (sl_id_from_hex(bad[i], out) != SL_EINVAL)
            fail_msg("accepted bad hex \"%s\"", bad[i]);
        assert_memory_equal(out, canary, SL_ID_LEN);    /* untouched */
    }
    SL_ASSERT_ERR(sl_id_from_hex(NULL, out), SL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id__million_ids_are_unique),
        cmocka_unit_test(test_id__threads_draw_unique_ids),
        cmocka_unit_test(test_id__fork_child_does_not_repeat_parent),
        cmocka_unit_test(test_id__layout_is_uuidv7_with_time_prefix),
        cmocka_unit_test(test_id__hex_round_trip),
        cmocka_unit_test(test_id__from_hex_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
