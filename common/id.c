/* id.c -- UUIDv7-style job ids from a per-thread xoshiro256** generator.
 *
 * A syscall per id would cost more than the rest of publishing a job, so
 * getrandom() only seeds each thread's generator; a fork bumps a generation
 * counter so a child never replays its parent's sequence. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "sluice/error.h"
#include "sluice/id.h"

typedef struct {
    uint64_t s[4];
    unsigned gen;       /* s_fork_gen when seeded; 0 = never */
} s_rng_t;

static _Thread_local s_rng_t s_rng;
static unsigned s_fork_gen = 1;
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static void s_after_fork_child(void)
{
    __atomic_add_fetch(&s_fork_gen, 1, __ATOMIC_RELAXED);
}

static void s_register_atfork(void)
{
    pthread_atfork(NULL, NULL, s_after_fork_child);
}

static inline uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t s_next(s_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

static int s_seed(s_rng_t *r, unsigned gen)
{
    uint8_t *p = (uint8_t *)r->s;
    size_t need = sizeof r->s;
    while (need > 0) {
        ssize_t n = getrandom(p, need, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return SL_ESYS;
        p += n;
        need -= (size_t)n;
    }
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 1;    /* the one state xoshiro cannot leave */
    r->gen = gen;
    return SL_OK;
}

int sl_id_new(uint8_t out[SL_ID_LEN])
{
    pthread_once(&s_once, s_register_atfork);
    unsigned gen = __atomic_load_n(&s_fork_gen, __ATOMIC_RELAXED);
    if (s_rng.gen != gen) {
        int rc = s_seed(&s_rng, gen);
        if (rc != SL_OK)
            return rc;
    }
    uint64_t ms = (uint64_t)sl_wall_ms();
    uint64_t a = s_next(&s_rng), b = s_next(&s_rng);
    for (int i = 0; i < 6; i++)
        out[i] = (uint8_t)(ms >> (40 - 8 * i));
    for (int i = 0; i < 2; i++)
        out[6 + i] = (uint8_t)(a >> (8 * i));
    for (int i = 0; i < 8; i++)
        out[8 + i] = (uint8_t)(b >> (8 * i));
    out[6] = (uint8_t)(0x70 | (out[6] & 0x0F));    /* version 7 */
    out[8] = (uint8_t)(0x80 | (out[8] & 0x3F));    /* variant 10 */
    return SL_OK;
}

char *sl_id_to_hex(const uint8_t id[SL_ID_LEN], char out[SL_ID_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SL_ID_LEN; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 0x0F];
    }
    out[SL_ID_HEX_LEN] = '\0';
    return out;
}

static int s_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sl_id_from_hex(const char *hex, uint8_t out[SL_ID_LEN])
{
    uint8_t tmp[SL_ID_LEN];
    if (!hex)
        return SL_EINVAL;
    for (int i = 0; i < SL_ID_LEN; i++) {
        /* a short string stops at its NUL, which is not a hex digit */
        int hi = s_hexval(hex[2 * i]);
        if (hi < 0)
            return SL_EINVAL;
        int lo = s_hexval(hex[2 * i + 1]);
        if (lo < 0)
            return SL_EINVAL;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    if (hex[SL_ID_HEX_LEN] != '\0')
        return SL_EINVAL;
    memcpy(out, tmp, SL_ID_LEN);
    return SL_OK;
}

int64_t sl_id_time_ms(const uint8_t id[SL_ID_LEN])
{
    int64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id[i];
    return ms;
}

int64_t sl_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
