/* seeds.c -- writes the seed corpus of the fuzz targets: one valid envelope
 * of every kind for envelope_fuzz, and short node_fuzz programs (format in
 * node_fuzz.h) that walk the job lifecycle, the overflow policies and the
 * odd corners of the protocol.
 *
 * Usage: fuzz_seeds DIR   writes DIR/envelope/<name> and DIR/node/<name>
 * (the directories must exist). The committed tests/fuzz/corpus/ is this
 * program's output; rerun it after changing node_fuzz.h or the proto. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_fuzz.h"
#include "sluice.pb-c.h"

static const char *s_dir;

static void s_write(const char *sub, const char *name, const uint8_t *buf, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", s_dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* --- envelope seeds --------------------------------------------------------- */

static uint8_t s_id[16] = {0x01, 0x8f, 0x3a, 0x7c, 0x00, 0x00, 0x70, 0x00,
                           0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a};

static size_t s_pack_env(const Sluice__V1__Envelope *env, uint8_t *buf)
{
    if (sluice__v1__envelope__get_packed_size(env) > 4096)
        abort();
    return sluice__v1__envelope__pack(env, buf);
}

static void s_env(const char *name, const Sluice__V1__Envelope *env)
{
    uint8_t buf[4096];
    s_write("envelope", name, buf, s_pack_env(env, buf));
}

static void s_envelopes(void)
{
    Sluice__V1__Envelope e = SLUICE__V1__ENVELOPE__INIT;
    Sluice__V1__Job job = SLUICE__V1__JOB__INIT;
    Sluice__V1__Job__HeadersEntry h = SLUICE__V1__JOB__HEADERS_ENTRY__INIT, *hp = &h;
    Sluice__V1__Job *jp = &job;
    job.id = (ProtobufCBinaryData){16, s_id};
    job.queue = "emails";
    job.payload = (ProtobufCBinaryData){5, (uint8_t *)"hello"};
    h.key = "content-type";
    h.value = "text/plain";
    job.n_headers = 1;
    job.headers = &hp;
    job.priority = 7;
    job.max_attempts = 3;
    job.created_ms = 1700000000000;
    job.not_before_ms = 1700000000500;
    job.deadline_ms = 1700000060000;
    job.idempotency_key = "order-42";
    job.trace_id = (ProtobufCBinaryData){4, (uint8_t *)"\x01\x02\x03\x04"};
    job.breaker_key = "smtp";
    Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
    pub.n_jobs = 1;
    pub.jobs = &jp;
    e.corr = 1;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_PUBLISH;
    e.publish = &pub;
    s_env("publish", &e);

    /* The same publish with fields this build does not know: 99 (varint)
     * and 100 (bytes) in the envelope, 50 (fixed64) in the job. */
    uint8_t buf[4096];
    size_t len = s_pack_env(&e, buf);
    const uint8_t extra[] = {0x98, 0x06, 0x2a, 0xa2, 0x06, 0x03, 'n', 'e', 'w'};
    memcpy(buf + len, extra, sizeof extra);
    s_write("envelope", "publish-unknown-fields", buf, len + sizeof extra);

    Sluice__V1__JobConfirm jc = SLUICE__V1__JOB_CONFIRM__INIT, *jcp = &jc;
    jc.id = job.id;
    jc.status = SLUICE__V1__JOB_CONFIRM__STATUS__REJECTED;
    jc.reason = "queue draining";
    jc.retry_after_ms = 1000;
    Sluice__V1__PublishConfirm pc = SLUICE__V1__PUBLISH_CONFIRM__INIT;
    pc.n_confirms = 1;
    pc.confirms = &jcp;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_CONFIRM;
    e.confirm = &pc;
    s_env("confirm", &e);

    Sluice__V1__Subscribe sub = SLUICE__V1__SUBSCRIBE__INIT;
    sub.queue = "emails";
    sub.credit = 10;
    sub.consumer_id = "worker-1";
    e.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE;
    e.subscribe = &sub;
    s_env("subscribe", &e);

    Sluice__V1__Credit cr = SLUICE__V1__CREDIT__INIT;
    cr.queue = "emails";
    cr.credit = 5;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_CREDIT;
    e.credit = &cr;
    s_env("credit", &e);

    Sluice__V1__Unsubscribe un = SLUICE__V1__UNSUBSCRIBE__INIT;
    un.queue = "emails";
    e.body_case = SLUICE__V1__ENVELOPE__BODY_UNSUBSCRIBE;
    e.unsubscribe = &un;
    s_env("unsubscribe", &e);

    Sluice__V1__Lease lease = SLUICE__V1__LEASE__INIT;
    lease.job_id = job.id;
    lease.lease_id = 77;
    lease.epoch = 0x5eed5eed5eed5eedull;
    lease.expires_ms = 1700000030000;
    Sluice__V1__Delivery dl = SLUICE__V1__DELIVERY__INIT, *dlp = &dl;
    dl.job = &job;
    dl.lease = &lease;
    Sluice__V1__Deliver dv = SLUICE__V1__DELIVER__INIT;
    dv.n_deliveries = 1;
    dv.deliveries = &dlp;
    e.corr = 0;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_DELIVER;
    e.deliver = &dv;
    s_env("deliver", &e);

    Sluice__V1__AckItem ai = SLUICE__V1__ACK_ITEM__INIT, *aip = &ai;
    ai.lease = &lease;
    ai.result = (ProtobufCBinaryData){2, (uint8_t *)"ok"};
    Sluice__V1__Ack ack = SLUICE__V1__ACK__INIT;
    ack.n_items = 1;
    ack.items = &aip;
    e.corr = 2;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_ACK;
    e.ack = &ack;
    s_env("ack", &e);

    Sluice__V1__Fail fl = SLUICE__V1__FAIL__INIT;
    fl.lease = &lease;
    fl.retryable = 1;
    fl.error = "smtp timeout";
    e.body_case = SLUICE__V1__ENVELOPE__BODY_FAIL;
    e.fail = &fl;
    s_env("fail", &e);

    Sluice__V1__Touch t = SLUICE__V1__TOUCH__INIT;
    t.lease = &lease;
    t.extend_ms = 60000;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_TOUCH;
    e.touch = &t;
    s_env("touch", &e);

    Sluice__V1__Error er = SLUICE__V1__ERROR__INIT;
    er.code = SLUICE__V1__ERROR__CODE__STALE_LEASE;
    er.text = "stale lease: not held, expired or superseded";
    Sluice__V1__LeaseReply lr = SLUICE__V1__LEASE_REPLY__INIT;
    lr.lease = &lease;
    lr.error = &er;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_LEASE_REPLY;
    e.lease_reply = &lr;
    s_env("lease-reply", &e);

    Sluice__V1__Heartbeat hb = SLUICE__V1__HEARTBEAT__INIT;
    hb.node_id = "host:1234";
    hb.epoch = lease.epoch;
    hb.sent_ms = 1700000000000;
    hb.interval_ms = 1000;
    e.corr = 0;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    s_env("heartbeat", &e);

    er.code = SLUICE__V1__ERROR__CODE__BAD_QUEUE;
    er.text = "invalid queue name 'a b'";
    e.corr = 3;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_ERROR;
    e.error = &er;
    s_env("error", &e);

    Sluice__V1__Admin ad = SLUICE__V1__ADMIN__INIT;
    ad.op = SLUICE__V1__ADMIN__OP__PAUSE;
    ad.queue = "emails";
    e.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN;
    e.admin = &ad;
    s_env("admin", &e);

    Sluice__V1__QueueStats qs = SLUICE__V1__QUEUE_STATS__INIT, *qsp = &qs;
    qs.name = "emails";
    qs.depth = 3;
    qs.in_flight = 1;
    qs.published = 10;
    qs.consumers = 2;
    qs.paused = 1;
    qs.overflow = "drop-oldest";
    qs.capacity = 100000;
    Sluice__V1__AdminReply ar = SLUICE__V1__ADMIN_REPLY__INIT;
    ar.n_queues = 1;
    ar.queues = &qsp;
    ar.node_id = "host:1234";
    ar.epoch = lease.epoch;
    ar.peers = 4;
    e.body_case = SLUICE__V1__ENVELOPE__BODY_ADMIN_REPLY;
    e.admin_reply = &ar;
    s_env("admin-reply", &e);

    Sluice__V1__Envelope none = SLUICE__V1__ENVELOPE__INIT;
    none.corr = 9;
    s_env("no-body", &none);
}

/* --- node programs ---------------------------------------------------------- */

typedef struct {
    uint8_t b[4096];
    size_t n;
} prog_t;

static void u8(prog_t *p, unsigned v)
{
    if (p->n >= sizeof p->b)
        abort();
    p->b[p->n++] = (uint8_t)v;
}

static void uN(prog_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        u8(p, (unsigned)(v >> (8 * i)) & 0xff);
}

static void chunk(prog_t *p, const void *data, size_t len)
{
    if (len >= 255) {
        u8(p, 255);
        uN(p, len, 2);
    } else {
        u8(p, (unsigned)len);
    }
    for (size_t i = 0; i < len; i++)
        u8(p, ((const uint8_t *)data)[i]);
}

static void str(prog_t *p, const char *s)
{
    chunk(p, s, strlen(s));
}

static void op(prog_t *p, int kind, int node, int sock)
{
    u8(p, NF_CODE(kind, node, sock));
}

/* One job: flags, queue selector, priority, payload (flags add no more). */
static void job(prog_t *p, unsigned flags, unsigned queue, unsigned prio, const char *payload)
{
    u8(p, flags);
    u8(p, queue);
    u8(p, prio);
    str(p, payload);
}

static void publish(prog_t *p, int node, int sock, unsigned queue, int njobs, unsigned prio)
{
    op(p, NF_PUBLISH, node, sock);
    u8(p, (unsigned)(njobs - 1));
    for (int i = 0; i < njobs; i++)
        job(p, 0, queue, prio, "payload");
}

static void subscribe(prog_t *p, int node, int sock, unsigned queue, unsigned credit)
{
    op(p, NF_SUBSCRIBE, node, sock);
    u8(p, queue);
    u8(p, credit);
    str(p, "worker");
}

/* A lease the node delivered: selector, damage byte. */
static void lease(prog_t *p, unsigned sel, unsigned mut)
{
    u8(p, sel);
    u8(p, mut);
}

static void sync_(prog_t *p, int node, int sock)
{
    op(p, NF_SYNC, node, sock);
}

static void wait_(prog_t *p, int node, unsigned ticks)
{
    op(p, NF_WAIT, node, 0);
    u8(p, ticks);
}

static void s_node_prog(const char *name, const prog_t *p)
{
    s_write("node", name, p->b, p->n);
}

static void s_node(void)
{
    prog_t p;

    /* publish, consume, ack */
    memset(&p, 0, sizeof p);
    publish(&p, 0, 0, 0, 2, 5);
    subscribe(&p, 0, 0, 0, 4);
    sync_(&p, 0, 0);
    op(&p, NF_ACK, 0, 0);
    u8(&p, 1); /* two items */
    lease(&p, 0, 0);
    str(&p, "done");
    lease(&p, 1, 0);
    str(&p, "");
    sync_(&p, 0, 0);
    s_node_prog("ack", &p);

    /* fail with retry, then for good; a stale fail */
    memset(&p, 0, sizeof p);
    publish(&p, 0, 0, 1, 1, 0);
    subscribe(&p, 0, 0, 1, 2);
    sync_(&p, 0, 0);
    op(&p, NF_FAIL, 0, 0);
    lease(&p, 0, 0);
    u8(&p, 1);
    str(&p, "transient");
    wait_(&p, 0, 5);
    sync_(&p, 0, 0);
    op(&p, NF_FAIL, 0, 0);
    lease(&p, 0, 0); /* the redelivery */
    u8(&p, 0);
    str(&p, "permanent");
    op(&p, NF_FAIL, 0, 0);
    lease(&p, 0, 4);
    u8(&p, 1);
    str(&p, "stale");
    s_node_prog("fail", &p);

    /* touch, then a touch on a damaged lease, then ack */
    memset(&p, 0, sizeof p);
    publish(&p, 0, 0, 2, 1, 9);
    subscribe(&p, 0, 0, 2, 1);
    sync_(&p, 0, 0);
    op(&p, NF_TOUCH, 0, 0);
    lease(&p, 0, 0);
    uN(&p, 1000, 2);
    op(&p, NF_TOUCH, 0, 0);
    lease(&p, 0, 5);
    uN(&p, 0, 2);
    op(&p, NF_ACK, 0, 0);
    u8(&p, 0);
    lease(&p, 0, 0);
    str(&p, "");
    s_node_prog("touch", &p);

    /* every overflow policy past max-length (8), then a consumer drains */
    for (int node = 0; node < 3; node++) {
        static const char *names[] = {"full-block", "full-drop-new", "full-drop-oldest"};
        memset(&p, 0, sizeof p);
        for (int i = 0; i < 4; i++)
            publish(&p, node, 0, 3, 4, (unsigned)i);
        sync_(&p, node, 0);
        op(&p, NF_SUBSCRIBE, node, 1);
        u8(&p, 3);
        u8(&p, 255); /* credit: a u32 follows */
        uN(&p, 20, 4);
        str(&p, "drainer");
        sync_(&p, node, 1);
        s_node_prog(names[node], &p);
    }

    /* delayed, expiring, duplicate and keyed jobs */
    memset(&p, 0, sizeof p);
    op(&p, NF_PUBLISH, 0, 0);
    u8(&p, 3); /* four jobs */
    job(&p, 4, 0, 1, "later");
    u8(&p, 20); /* not before: 20 ms from now */
    job(&p, 8, 0, 1, "expired");
    u8(&p, 0xf0); /* deadline: 16 ms ago */
    job(&p, 2, 0, 1, "duplicate id");
    job(&p, 16 | 32, 1, 3, "keyed");
    u8(&p, 1); /* key k1 */
    u8(&p, 2); /* max attempts */
    op(&p, NF_PUBLISH, 0, 0);
    u8(&p, 1);
    job(&p, 16, 1, 3, "same key");
    u8(&p, 1);
    job(&p, 64 | 4 | 8, 2, 250, "bad priority, raw times"); /* priority 250 */
    uN(&p, UINT64_C(0x7fffffffffffffff), 8);
    uN(&p, UINT64_C(0x8000000000000000), 8);
    str(&p, "h");
    str(&p, "v");
    str(&p, "trace");
    str(&p, "breaker");
    wait_(&p, 0, 8);
    subscribe(&p, 0, 0, 0, 8);
    sync_(&p, 0, 0);
    s_node_prog("timing", &p);

    /* invalid jobs: short id, bad queue name, big payload */
    memset(&p, 0, sizeof p);
    op(&p, NF_PUBLISH, 1, 0);
    u8(&p, 2);
    u8(&p, 3);
    u8(&p, 0);
    u8(&p, 0);
    str(&p, "short");
    str(&p, "p");
    u8(&p, 0);
    u8(&p, 0xF1);
    str(&p, "no spaces allowed");
    u8(&p, 0);
    str(&p, "p");
    u8(&p, 0);
    u8(&p, 0);
    u8(&p, 0);
    {
        static uint8_t big[600];
        memset(big, 'x', sizeof big);
        chunk(&p, big, sizeof big);
    }
    s_node_prog("invalid-jobs", &p);

    /* credit, unsubscribe, credit without a subscription */
    memset(&p, 0, sizeof p);
    subscribe(&p, 2, 0, 0, 0);
    op(&p, NF_CREDIT, 2, 0);
    u8(&p, 0);
    u8(&p, 255);
    uN(&p, 0xffffffff, 4);
    publish(&p, 2, 0, 0, 3, 4);
    sync_(&p, 2, 0);
    op(&p, NF_UNSUBSCRIBE, 2, 0);
    u8(&p, 0);
    op(&p, NF_CREDIT, 2, 0);
    u8(&p, 0);
    u8(&p, 1);
    op(&p, NF_SUBSCRIBE, 2, 0);
    u8(&p, 0xFF); /* empty queue name */
    u8(&p, 1);
    str(&p, "");
    s_node_prog("credit", &p);

    /* admin: pause, resume, drain, one queue, unknown queue and op */
    memset(&p, 0, sizeof p);
    publish(&p, 0, 0, 2, 1, 0);
    for (unsigned o = 1; o <= 3; o++) {
        op(&p, NF_ADMIN, 0, 0);
        u8(&p, o);
        u8(&p, 2);
    }
    op(&p, NF_ADMIN, 0, 0);
    u8(&p, 0);
    u8(&p, 2);
    op(&p, NF_ADMIN, 0, 0);
    u8(&p, 1);
    u8(&p, 0xF2);
    str(&p, "nosuch");
    op(&p, NF_ADMIN, 0, 0);
    u8(&p, 2);
    u8(&p, 0xFF);
    op(&p, NF_ADMIN, 0, 0);
    u8(&p, 4);
    u8(&p, 9);
    u8(&p, 1);
    publish(&p, 0, 0, 2, 1, 0);
    s_node_prog("admin", &p);

    /* raw frames: a valid envelope, three frames, an empty frame, garbage */
    memset(&p, 0, sizeof p);
    {
        uint8_t buf[4096];
        Sluice__V1__Subscribe sub = SLUICE__V1__SUBSCRIBE__INIT;
        sub.queue = "q0";
        sub.credit = 3;
        Sluice__V1__Envelope e = SLUICE__V1__ENVELOPE__INIT;
        e.corr = 5;
        e.body_case = SLUICE__V1__ENVELOPE__BODY_SUBSCRIBE;
        e.subscribe = &sub;
        size_t len = s_pack_env(&e, buf);
        op(&p, NF_RAW, 0, 0);
        u8(&p, 0);
        chunk(&p, buf, len);
        op(&p, NF_RAW, 0, 0);
        u8(&p, 2);
        chunk(&p, buf, len);
        chunk(&p, buf, len);
        chunk(&p, "", 0);
        op(&p, NF_RAW, 0, 1);
        u8(&p, 0);
        chunk(&p, "", 0);
        op(&p, NF_RAW, 1, 0);
        u8(&p, 0);
        chunk(&p, "\xff\xff\xff\xff\x0f\x52\x02", 7);
    }
    op(&p, NF_BIG, 0, 0);
    u8(&p, 10);
    s_node_prog("raw", &p);

    /* kinds a client must not send */
    memset(&p, 0, sizeof p);
    for (unsigned v = 0; v < 7; v++) {
        op(&p, NF_ODD, (int)(v % 3), 0);
        uN(&p, v, 2); /* corr */
        u8(&p, v);
        switch (v) {
        case 0: str(&p, "node"); u8(&p, 1); uN(&p, 1700000000000, 8); uN(&p, 1000, 4); break;
        case 1: chunk(&p, s_id, 16); u8(&p, 1); break;
        case 2: chunk(&p, s_id, 16); str(&p, "q0"); uN(&p, 1, 8); break;
        case 3: chunk(&p, s_id, 16); break;
        case 4: u8(&p, 5); str(&p, "stale"); break;
        case 5: str(&p, "node"); uN(&p, 1, 8); break;
        default: break;
        }
    }
    s_node_prog("odd-kinds", &p);

    /* the in-process handler on q3: ack, retry, fail; then a raw publish */
    memset(&p, 0, sizeof p);
    for (int node = 0; node < 3; node++) {
        op(&p, NF_PUBLISH, node, 0);
        u8(&p, 2);
        job(&p, 0, 3, 1, "\x00 ack");
        job(&p, 0, 3, 1, "\x01 retry");
        job(&p, 0, 3, 1, "\x02 fail");
    }
    {
        uint8_t buf[4096];
        Sluice__V1__Job j = SLUICE__V1__JOB__INIT, *jp = &j;
        j.id = (ProtobufCBinaryData){16, s_id};
        j.queue = "q3";
        j.payload = (ProtobufCBinaryData){1, (uint8_t *)"\x01"};
        Sluice__V1__Publish pub = SLUICE__V1__PUBLISH__INIT;
        pub.n_jobs = 1;
        pub.jobs = &jp;
        Sluice__V1__Envelope e = SLUICE__V1__ENVELOPE__INIT;
        e.corr = 6;
        e.body_case = SLUICE__V1__ENVELOPE__BODY_PUBLISH;
        e.publish = &pub;
        op(&p, NF_RAW, 0, 0);
        u8(&p, 0);
        chunk(&p, buf, s_pack_env(&e, buf));
    }
    wait_(&p, 0, 10);
    s_node_prog("local-handler", &p);

    /* a consumer that goes away holding leases */
    memset(&p, 0, sizeof p);
    op(&p, NF_RECONNECT, 1, 1);
    str(&p, "consumer-a");
    subscribe(&p, 1, 1, 1, 4);
    publish(&p, 1, 0, 1, 3, 2);
    sync_(&p, 1, 1);
    op(&p, NF_RECONNECT, 1, 1);
    str(&p, "consumer-b");
    wait_(&p, 1, 15);
    wait_(&p, 1, 15);
    wait_(&p, 1, 15);
    sync_(&p, 1, 0);
    s_node_prog("peer-gone", &p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    s_dir = argv[1];
    s_envelopes();
    s_node();
    return 0;
}
