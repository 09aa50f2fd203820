/* util.c -- spawning and retrying helpers shared by the combinators. */
#include <stdlib.h>

#include "util.h"

int sl__ops_go(sl_go_fn fn, void *arg, int flags)
{
    int err = SL_ENOMEM;
    if (sl_go_ex(fn, arg, flags, 0, &err) == NULL)
        return err < 0 ? err : SL_ENOMEM;
    return SL_OK;
}

void sl__ops_backoff(void)
{
    sl_sleep_ms(1);
}

int sl__ops_take(sl_chan_t *ch, void **out)
{
    int rc;
    while ((rc = sl_take(ch, out)) == SL_ELIMIT)
        sl__ops_backoff();
    /* Inside a coroutine only SL_OK and SL_ECLOSED remain; map anything
     * unexpected to "closed" so a loop ends rather than spins. */
    return rc == SL_OK ? SL_OK : SL_ECLOSED;
}

int sl__ops_put(sl_chan_t *ch, void *v)
{
    int rc;
    while ((rc = sl_put(ch, v)) == SL_ELIMIT)
        sl__ops_backoff();
    return rc == SL_OK ? SL_OK : SL_ECLOSED;
}

void *sl__ops_alloc_wait(size_t size)
{
    void *p;
    while ((p = calloc(1, size)) == NULL)
        sl__ops_backoff();
    return p;
}

sl_chan_t *sl__ops_chan_wait(sl_buf_t kind, size_t cap)
{
    sl_chan_t *ch;
    while ((ch = sl_chan_new(kind, cap)) == NULL)
        sl__ops_backoff();
    return ch;
}
