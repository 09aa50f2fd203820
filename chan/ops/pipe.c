/* pipe.c -- sl_pipe: copy one channel into another (core.async's pipe). */
#include <stdlib.h>

#include "sluice/ops.h"
#include "util.h"

typedef struct {
    sl_chan_t *from;  /* owned reference */
    sl_chan_t *to;    /* owned reference */
    sl_chan_t *done;  /* owned reference; closed when the copy ends */
    bool close_to;
} s_pipe_t;

static void *s_pipe_run(void *arg)
{
    s_pipe_t *p = arg;
    void *v;
    while (sl__ops_take(p->from, &v) == SL_OK) {
        if (sl__ops_put(p->to, v) != SL_OK)
            break; /* `to` closed: v is lost, as in core.async */
    }
    if (p->close_to)
        sl_chan_close(p->to);
    sl_chan_close(p->done);
    sl_chan_destroy(&p->from);
    sl_chan_destroy(&p->to);
    sl_chan_destroy(&p->done);
    free(p);
    return NULL;
}

sl_chan_t *sl_pipe(sl_chan_t *from, sl_chan_t *to, bool close_to)
{
    if (!from || !to)
        return NULL;
    s_pipe_t *p = calloc(1, sizeof *p);
    sl_chan_t *done = sl_chan_new(SL_BUF_NONE, 0);
    if (!p || !done)
        goto fail;
    p->from = sl_chan_ref(from);
    p->to = sl_chan_ref(to);
    p->done = sl_chan_ref(done);
    p->close_to = close_to;
    if (sl__ops_go(s_pipe_run, p, 0) != SL_OK) {
        sl_chan_destroy(&p->from);
        sl_chan_destroy(&p->to);
        sl_chan_destroy(&p->done);
        goto fail;
    }
    return done; /* caller owns one reference, the coroutine another */
fail:
    free(p);
    sl_chan_destroy(&done);
    return NULL;
}
