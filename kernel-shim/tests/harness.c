/*
 * C harness for h2msg-kshim: compiled against the generated include/h2msg.h and a host
 * build of the static library (kernel-shim/ci/c-harness.sh). Two iocoms in malloc'ed
 * memory talk to each other in memory, with a fake kernel behind struct h2msg_kernel_ops.
 * Expected values come from the spec and from this file's own CRC-32C and header
 * encoder, never from the library. Exit status 0 only if every check passed.
 *
 * The last test floods a socketpair both ways at once (H2MSG_FLOOD_MIB MiB each way,
 * default 1024) with non-blocking fds and poll(2), reading while writes are pending.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "h2msg.h"

static int checks, failures;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            failures++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                                \
    } while (0)

#define CHECK_EQ(got, want)                                                              \
    do {                                                                                 \
        long long got_ = (long long)(got), want_ = (long long)(want);                    \
        checks++;                                                                        \
        if (got_ != want_) {                                                             \
            failures++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s is %lld, want %lld\n", __FILE__, __LINE__,  \
                    #got, got_, want_);                                                  \
        }                                                                                \
    } while (0)

/* ----- the fake kernel --------------------------------------------------------------- */

/* CRC-32C bit by bit (spec appendix B), continuing from a finished CRC. */
static uint32_t crc32c_bitwise(const void *buf, size_t len, uint32_t crc)
{
    const uint8_t *p = buf;
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static unsigned long kernel_crc_calls, random_calls;
static const uint8_t random_fill = 0xA5;
static char last_log[160];
static int log_lines;

static uint32_t kernel_crc32c(const void *buf, size_t len, uint32_t crc)
{
    kernel_crc_calls++;
    return crc32c_bitwise(buf, len, crc);
}

static void kernel_random_bytes(void *buf, size_t len)
{
    random_calls++;
    memset(buf, random_fill, len);
}

static void kernel_log(const char *line)
{
    log_lines++;
    snprintf(last_log, sizeof last_log, "%s", line);
}

/* The panic hook must exist to link; the freestanding proof shows nothing reaches it. */
void h2msg_kernel_panic(const char *msg)
{
    fprintf(stderr, "h2msg_kernel_panic: %s\n", msg);
    abort();
}

/* ----- sides ------------------------------------------------------------------------------ */

#define MAX_EVENTS 512

struct logged {
    struct h2msg_event ev;
    uint8_t *aux; /* a copy: the event's pointer is valid only until the next call */
};

struct side {
    struct h2msg_iocom *io;
    void *mem;
    int in_place;     /* receive through read_buf/commit_read instead of feed */
    size_t chunk;     /* most bytes moved per transfer */
    int shell_node;   /* answer DBG_SHELL commands: aux XOR 0x5A, error 0 */
    struct logged events[MAX_EVENTS];
    size_t n_events;
};

static void *iocom_memory(void)
{
    size_t align = h2msg_iocom_align(), size = h2msg_iocom_size();
    void *mem = aligned_alloc(align, (size + align - 1) / align * align);
    if (!mem) {
        perror("aligned_alloc");
        exit(2);
    }
    memset(mem, 0xCC, size); /* init must not depend on zeroed memory */
    return mem;
}

static void side_up(struct side *s, int kernel_crc, int in_place, size_t chunk)
{
    struct h2msg_kernel_ops ops = {
        .random_bytes = kernel_random_bytes,
        .crc32c = kernel_crc ? kernel_crc32c : NULL,
        .log = kernel_log,
    };
    memset(s, 0, sizeof *s);
    s->mem = iocom_memory();
    s->in_place = in_place;
    s->chunk = chunk;
    CHECK_EQ(h2msg_iocom_init(s->mem, h2msg_iocom_size(), &ops, &s->io), H2MSG_OK);
    CHECK(s->io == s->mem);
}

static void forget_events(struct side *s)
{
    for (size_t i = 0; i < s->n_events; i++)
        free(s->events[i].aux);
    s->n_events = 0;
}

static void side_down(struct side *s)
{
    forget_events(s);
    CHECK_EQ(h2msg_iocom_fini(s->io), H2MSG_OK);
    free(s->mem);
    memset(s, 0, sizeof *s);
}

/* Moves pending bytes of `from` into `to`; returns how many moved. */
static size_t transfer(struct side *from, struct side *to)
{
    size_t moved = 0;
    for (;;) {
        struct h2msg_iovec iov[H2MSG_MAXIOVEC];
        size_t n = 0, took = 0;
        CHECK_EQ(h2msg_iocom_pending(from->io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
        if (n == 0)
            return moved;
        size_t want = iov[0].iov_len < to->chunk ? iov[0].iov_len : to->chunk;
        if (to->in_place) {
            uint8_t *buf = NULL;
            size_t room = 0;
            CHECK_EQ(h2msg_iocom_read_buf(to->io, &buf, &room), H2MSG_OK);
            took = want < room ? want : room;
            if (took) {
                memcpy(buf, iov[0].iov_base, took);
                CHECK_EQ(h2msg_iocom_commit_read(to->io, took), H2MSG_OK);
            }
        } else {
            CHECK_EQ(h2msg_iocom_feed(to->io, iov[0].iov_base, want, &took), H2MSG_OK);
        }
        if (took == 0)
            return moved; /* the receiver wants its events polled first */
        CHECK_EQ(h2msg_iocom_advance_write(from->io, took), H2MSG_OK);
        moved += took;
    }
}

/* Polls every event of `s` into its log, answering shell commands; returns the count. */
static size_t drain(struct side *s)
{
    size_t polled = 0;
    for (;;) {
        struct h2msg_event ev;
        CHECK_EQ(h2msg_iocom_poll(s->io, &ev), H2MSG_OK);
        if (ev.kind == H2MSG_EVENT_NONE)
            return polled;
        polled++;
        if (s->n_events == MAX_EVENTS) {
            fprintf(stderr, "event log full\n");
            exit(2);
        }
        struct logged *l = &s->events[s->n_events++];
        l->ev = ev;
        l->aux = NULL;
        if (ev.msg.aux_len) {
            l->aux = malloc(ev.msg.aux_len);
            memcpy(l->aux, ev.msg.aux, ev.msg.aux_len);
        }
        if (s->shell_node && ev.kind == H2MSG_EVENT_MESSAGE &&
            (ev.msg.cmd & ~H2MSG_MSGF_MASK) == H2MSG_CMD_DBG_SHELL &&
            !(ev.msg.cmd & H2MSG_MSGF_REPLY)) {
            uint8_t *answer = malloc(ev.msg.aux_len + 1);
            for (size_t i = 0; i < ev.msg.aux_len; i++)
                answer[i] = ev.msg.aux[i] ^ 0x5A;
            CHECK_EQ(h2msg_iocom_reply(s->io, &ev.msg, 0, answer, ev.msg.aux_len, 1),
                     H2MSG_OK);
            free(answer);
        }
    }
}

/* Pumps both ways until nothing moves; false if it never settles. */
static int exchange(struct side *a, struct side *b)
{
    for (int round = 0; round < 1000000; round++) {
        size_t moved = transfer(a, b) + transfer(b, a);
        size_t polled = drain(a) + drain(b);
        if (moved == 0 && polled == 0)
            return 1;
    }
    return 0;
}

static size_t count_kind(const struct side *s, uint32_t kind)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_events; i++)
        n += s->events[i].ev.kind == kind;
    return n;
}

static const struct logged *find_kind(const struct side *s, uint32_t kind)
{
    for (size_t i = 0; i < s->n_events; i++)
        if (s->events[i].ev.kind == kind)
            return &s->events[i];
    return NULL;
}

static uint32_t wait_flags(struct h2msg_iocom *io)
{
    uint32_t flags = 0;
    CHECK_EQ(h2msg_iocom_wait_for(io, &flags), H2MSG_OK);
    return flags;
}

/* ----- a header encoder of our own, for hand-made and corrupted input --------------------- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static uint16_t fold16(uint32_t c) { return (uint16_t)((c & 0xFFFF) ^ (c >> 16)); }

/* A little-endian message (spec §3.1, §3.6): 32-byte header, aux padded to 32. */
static size_t encode(uint8_t *out, uint32_t cmd, uint32_t msgid, const void *aux, size_t aux_len)
{
    size_t padded = (aux_len + 31) / 32 * 32;
    memset(out, 0, 32 + padded);
    memcpy(out + 32, aux, aux_len);
    put16(out, 0x4832);
    put32(out + 4, 0x12345600);
    put32(out + 12, msgid);
    put32(out + 16, cmd);
    put16(out + 26, (uint16_t)(padded / 32));
    put32(out + 28, padded ? crc32c_bitwise(out + 32, padded, 0) : 0);
    put16(out + 2, fold16(crc32c_bitwise(out + 4, 28, 0)));
    return 32 + padded;
}

static void reseal_icrc1(uint8_t *msg) { put16(msg + 2, fold16(crc32c_bitwise(msg + 4, 28, 0))); }

/* ----- tests ------------------------------------------------------------------------------ */

static void test_crc_reference(void)
{
    CHECK_EQ(crc32c_bitwise("123456789", 9, 0), 0xE3069283u); /* the catalogue's check value */
}

static void test_sizes(void)
{
    size_t size = h2msg_iocom_size(), align = h2msg_iocom_align();
    printf("# h2msg_iocom_size() = %zu, h2msg_iocom_align() = %zu\n", size, align);
    CHECK(size >= 8192 + 65536 + 2048 + 65536); /* FIFO, aux, room for any message */
    CHECK(align >= 8 && (align & (align - 1)) == 0);
}

static void test_misuse(void)
{
    struct h2msg_kernel_ops ops = {.random_bytes = kernel_random_bytes};
    struct h2msg_kernel_ops no_random = {0};
    struct h2msg_iocom *io = NULL;
    uint8_t *mem = iocom_memory();
    size_t size = h2msg_iocom_size();

    CHECK_EQ(h2msg_iocom_init(NULL, size, &ops, &io), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_init(mem + 1, size, &ops, &io), H2MSG_ERR_ALIGN);
    CHECK_EQ(h2msg_iocom_init(mem, size - 1, &ops, &io), H2MSG_ERR_SHORT);
    CHECK_EQ(h2msg_iocom_init(mem, size, NULL, &io), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_init(mem, size, &no_random, &io), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_init(mem, size, &ops, NULL), H2MSG_ERR_NULL);
    CHECK(io == NULL);

    /* Memory that init never set up, a NULL and a misaligned handle are refused. */
    struct h2msg_event ev;
    uint32_t flags;
    memset(mem, 0, size);
    CHECK_EQ(h2msg_iocom_poll((struct h2msg_iocom *)mem, &ev), H2MSG_ERR_HANDLE);
    CHECK_EQ(h2msg_iocom_poll(NULL, &ev), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_wait_for(NULL, &flags), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_close(NULL), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_end_input((struct h2msg_iocom *)(mem + 4)), H2MSG_ERR_ALIGN);

    CHECK_EQ(h2msg_iocom_init(mem, size, &ops, &io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_poll(io, NULL), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_wait_for(io, NULL), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_pending(io, NULL, 0, NULL), H2MSG_ERR_NULL);
    size_t n = 99;
    CHECK_EQ(h2msg_iocom_pending(io, NULL, 0, &n), H2MSG_OK);
    CHECK_EQ(n, 0);

    /* Sizes and transaction rules. */
    static uint8_t big[65537];
    uint8_t ext[32] = {0};
    CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, big, sizeof big),
             H2MSG_IOQ_FIELD);
    CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, NULL, 5), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, ext, 32, NULL, 0), H2MSG_IOQ_FIELD);
    CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL | H2MSG_MSGF_DELETE, 77, 0, NULL, 0,
                              NULL, 0),
             H2MSG_ERR_TRANSACTION);
    CHECK_EQ(h2msg_iocom_advance_write(io, 1), H2MSG_ERR_OVERCOMMIT);
    uint8_t *buf;
    size_t room;
    CHECK_EQ(h2msg_iocom_read_buf(io, &buf, &room), H2MSG_OK);
    CHECK(room > 0 && buf >= mem && buf + room <= mem + size);
    CHECK_EQ(h2msg_iocom_commit_read(io, room + 1), H2MSG_ERR_OVERCOMMIT);
    CHECK(wait_flags(io) == (H2MSG_IOF_RREQ | H2MSG_IOF_WIDLE));

    /* The queue: two 64 KiB messages do not fit at once. */
    CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, big, 65536), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, big, 65536), H2MSG_ERR_AGAIN);
    CHECK_EQ(h2msg_iocom_write_would_block(io), H2MSG_OK);
    CHECK(wait_flags(io) & H2MSG_IOF_WREQ);
    CHECK_EQ(h2msg_iocom_advance_write(io, 65568 + 1), H2MSG_ERR_OVERCOMMIT);
    CHECK_EQ(h2msg_iocom_advance_write(io, 65568), H2MSG_OK);
    CHECK(!(wait_flags(io) & H2MSG_IOF_WREQ));

    /* 64 open transactions of ours, then no msgid is free; 16 accepted commands at most. */
    for (int i = 0; i < 64; i++)
        CHECK_EQ(h2msg_iocom_open(io, H2MSG_CMD_DBG_SHELL, NULL, 0, NULL, 0, 0, NULL), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_open(io, H2MSG_CMD_DBG_SHELL, NULL, 0, NULL, 0, 0, NULL),
             H2MSG_ERR_NO_MSGID);
    for (uint32_t i = 0; i < 15; i++) /* LNK_PING is accepted from the start */
        CHECK_EQ(h2msg_iocom_accept(io, 0x00400001u + (i << 8)), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_accept(io, H2MSG_CMD_DBG_SHELL), H2MSG_ERR_ACCEPT_FULL);

    CHECK_EQ(h2msg_iocom_fini(io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_poll(io, &ev), H2MSG_ERR_HANDLE);
    CHECK_EQ(h2msg_iocom_fini(io), H2MSG_ERR_HANDLE);
    free(mem);
}

/* What A puts on the wire, checked with this file's CRC: magic, icrc1, aux_icrc, salt. */
static void test_wire_bytes(void)
{
    struct side a;
    side_up(&a, 1, 0, 1 << 20);
    unsigned long before = random_calls;
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, (const uint8_t *)"help", 5),
             H2MSG_OK);
    CHECK(random_calls > before);
    struct h2msg_iovec iov[H2MSG_MAXIOVEC];
    size_t n = 0;
    CHECK_EQ(h2msg_iocom_pending(a.io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    CHECK_EQ(n, 1);
    CHECK_EQ(iov[0].iov_len, 64);
    const uint8_t *m = iov[0].iov_base;
    CHECK(m[0] == 0x32 && m[1] == 0x48);
    CHECK_EQ(m[2] | m[3] << 8, fold16(crc32c_bitwise(m + 4, 28, 0)));
    uint32_t salt = m[4] | m[5] << 8 | m[6] << 16 | (uint32_t)m[7] << 24;
    CHECK_EQ(salt, 0xA5A5A500u); /* random high 24 bits, sequence 0 (§3.3) */
    CHECK_EQ((uint32_t)(m[16] | m[17] << 8 | m[18] << 16 | (uint32_t)m[19] << 24),
             H2MSG_CMD_DBG_SHELL);
    CHECK_EQ(m[26] | m[27] << 8, 1);
    CHECK_EQ((uint32_t)(m[28] | m[29] << 8 | m[30] << 16 | (uint32_t)m[31] << 24),
             crc32c_bitwise(m + 32, 32, 0));
    CHECK(memcmp(m + 32, "help\0\0\0", 7) == 0);
    side_down(&a);
}

/* A hand-encoded message is delivered; then the peer's clean end closes the link. */
static void test_hand_made_input(void)
{
    struct side b;
    uint8_t wire[96];
    side_up(&b, 0, 0, 1 << 20);
    CHECK_EQ(h2msg_iocom_accept(b.io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    size_t len = encode(wire, H2MSG_CMD_DBG_SHELL, 0, "status", 7);
    size_t took = 0;
    CHECK_EQ(h2msg_iocom_feed(b.io, wire, len, &took), H2MSG_OK);
    CHECK_EQ(took, len);
    CHECK_EQ(h2msg_iocom_end_input(b.io), H2MSG_OK);
    drain(&b);
    CHECK_EQ(b.n_events, 2);
    const struct logged *msg = find_kind(&b, H2MSG_EVENT_MESSAGE);
    CHECK(msg != NULL);
    if (msg) {
        CHECK_EQ(msg->ev.msg.cmd, H2MSG_CMD_DBG_SHELL);
        CHECK_EQ(msg->ev.msg.salt, 0x12345600u);
        CHECK_EQ(msg->ev.detail, H2MSG_TRANS_ONE_WAY);
        CHECK_EQ(msg->ev.msg.aux_len, 32);
        CHECK(msg->aux && memcmp(msg->aux, "status", 7) == 0);
    }
    const struct logged *down = find_kind(&b, H2MSG_EVENT_LINK_DOWN);
    CHECK(down && down->ev.detail == H2MSG_DOWN_CLOSED && down->ev.ioq_error == 0);
    CHECK(strcmp(last_log, "h2msg: link down: the peer closed the stream") == 0);
    CHECK(wait_flags(b.io) & H2MSG_IOF_FINISHED);
    side_down(&b);
}

/* DBG_SHELL one way and as transactions, pings, 64 KiB aux both ways, one side with the
 * kernel's CRC and in-place reads, the other with the built-in CRC and feed. */
static void test_two_iocoms(void)
{
    struct side a, b;
    side_up(&a, 1, 1, 1000);
    side_up(&b, 0, 0, 777);
    b.shell_node = 1;
    CHECK_EQ(h2msg_iocom_accept(a.io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_accept(b.io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);

    /* The seed era's shell: a one-way command line, a one-way reply. */
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, (const uint8_t *)"help", 5),
             H2MSG_OK);
    CHECK(exchange(&a, &b));
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_MESSAGE), 1);
    CHECK(b.events[0].aux && memcmp(b.events[0].aux, "help", 5) == 0);
    CHECK_EQ(count_kind(&a, H2MSG_EVENT_MESSAGE), 1);
    const struct logged *answer = find_kind(&a, H2MSG_EVENT_MESSAGE);
    CHECK(answer && (answer->ev.msg.cmd & H2MSG_MSGF_REPLY));
    CHECK(answer && answer->aux && answer->aux[0] == ('h' ^ 0x5A) && answer->aux[4] == 0x5A);

    /* 100 pings: answered by B's iocom itself, each reply closes its transaction. */
    forget_events(&a);
    forget_events(&b);
    uint32_t first_ping = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t msgid = 0;
        CHECK_EQ(h2msg_iocom_open(a.io, H2MSG_CMD_LNK_PING, NULL, 0, NULL, 0, 1, &msgid), H2MSG_OK);
        if (i == 0)
            first_ping = msgid;
        if (i % 10 == 9)
            CHECK(exchange(&a, &b));
    }
    CHECK(exchange(&a, &b));
    CHECK_EQ(count_kind(&a, H2MSG_EVENT_MESSAGE), 100);
    CHECK_EQ(b.n_events, 0);
    size_t closed = 0;
    for (size_t i = 0; i < a.n_events; i++) {
        const struct h2msg_event *ev = &a.events[i].ev;
        closed += ev->detail == H2MSG_TRANS_CLOSED && ev->side == H2MSG_SIDE_LOCAL &&
                  ev->msg.error == 0 && (ev->msg.cmd & H2MSG_MSGF_REPLY);
    }
    CHECK_EQ(closed, 100);
    CHECK_EQ(a.events[0].ev.msg.msgid, first_ping);

    /* 64 KiB of aux as a transaction, answered with 64 KiB. */
    static uint8_t big[65536];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 8));
    forget_events(&a);
    forget_events(&b);
    unsigned long crc_before = kernel_crc_calls;
    uint32_t msgid = 0;
    CHECK_EQ(h2msg_iocom_open(a.io, H2MSG_CMD_DBG_SHELL, NULL, 0, big, sizeof big, 1, &msgid),
             H2MSG_OK);
    CHECK(exchange(&a, &b));
    CHECK(kernel_crc_calls > crc_before); /* A's CRC is the kernel's */
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_MESSAGE), 1);
    const struct logged *got = find_kind(&b, H2MSG_EVENT_MESSAGE);
    CHECK(got && got->ev.msg.aux_len == sizeof big && got->ev.msg.aux_units == 2048);
    CHECK(got && got->ev.detail == H2MSG_TRANS_DIRECTION_CLOSED && got->ev.side == H2MSG_SIDE_REMOTE);
    CHECK(got && got->aux && memcmp(got->aux, big, sizeof big) == 0);
    CHECK(got && got->ev.msg.aux_icrc == crc32c_bitwise(big, sizeof big, 0));
    const struct logged *reply = find_kind(&a, H2MSG_EVENT_MESSAGE);
    CHECK(reply && reply->ev.msg.msgid == msgid && reply->ev.msg.aux_len == sizeof big);
    CHECK(reply && reply->ev.detail == H2MSG_TRANS_CLOSED);
    int reply_ok = reply && reply->aux;
    for (size_t i = 0; reply_ok && i < sizeof big; i++)
        reply_ok = reply->aux[i] == (big[i] ^ 0x5A);
    CHECK(reply_ok);

    /* A ring that wraps: the pending bytes come as two iovecs, and arrive intact. */
    forget_events(&a);
    forget_events(&b);
    uint8_t aux4000[4000];
    memset(aux4000, 0x3C, sizeof aux4000);
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, big, sizeof big), H2MSG_OK);
    size_t n = 0;
    struct h2msg_iovec iov[H2MSG_MAXIOVEC];
    CHECK_EQ(h2msg_iocom_pending(a.io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    CHECK(n == 1 && iov[0].iov_len == 32 + sizeof big);
    /* Hand B the first 65000 bytes (as a socket would), then queue 4032 more bytes. */
    size_t sent = 0;
    while (sent < 65000) {
        size_t took = 0;
        CHECK_EQ(h2msg_iocom_pending(a.io, iov, 1, &n), H2MSG_OK);
        size_t want = 65000 - sent < iov[0].iov_len ? 65000 - sent : iov[0].iov_len;
        CHECK_EQ(h2msg_iocom_feed(b.io, iov[0].iov_base, want, &took), H2MSG_OK);
        CHECK_EQ(h2msg_iocom_advance_write(a.io, took), H2MSG_OK);
        sent += took;
        if (took == 0)
            drain(&b);
    }
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, aux4000, sizeof aux4000),
             H2MSG_OK);
    CHECK_EQ(h2msg_iocom_pending(a.io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    CHECK_EQ(n, 2);
    CHECK_EQ(iov[0].iov_len + iov[1].iov_len, 32 + sizeof big - 65000 + 32 + sizeof aux4000);
    CHECK_EQ(h2msg_iocom_pending(a.io, iov, 1, &n), H2MSG_OK);
    CHECK_EQ(n, 1);
    CHECK(exchange(&a, &b));
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_MESSAGE), 2);
    CHECK(b.events[0].aux && memcmp(b.events[0].aux, big, sizeof big) == 0);
    CHECK(b.events[1].aux && b.events[1].ev.msg.aux_len == 4000 &&
          memcmp(b.events[1].aux, aux4000, sizeof aux4000) == 0);

    /* Link loss: A has three open transactions B accepted; A closes. */
    forget_events(&a);
    forget_events(&b);
    b.shell_node = 0;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(h2msg_iocom_open(a.io, H2MSG_CMD_DBG_SHELL, NULL, 0, NULL, 0, 0, NULL), H2MSG_OK);
    CHECK(exchange(&a, &b));
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_MESSAGE), 3);
    CHECK_EQ(b.events[0].ev.detail, H2MSG_TRANS_OPENED);
    CHECK_EQ(h2msg_iocom_close(a.io), H2MSG_OK);
    drain(&a);
    CHECK_EQ(count_kind(&a, H2MSG_EVENT_ABORTED), 3);
    CHECK_EQ(a.n_events, 4);
    for (size_t i = 0; i < 3; i++) {
        const struct h2msg_event *ev = &a.events[i].ev;
        CHECK_EQ(ev->side, H2MSG_SIDE_LOCAL);
        CHECK_EQ(ev->msg.error, H2MSG_MSG_ERR_LOSTLINK);
        CHECK_EQ(ev->msg.cmd & ~H2MSG_MSGF_MASK, H2MSG_CMD_LNK_ERROR);
        CHECK((ev->msg.cmd & (H2MSG_MSGF_ABORT | H2MSG_MSGF_DELETE)) ==
              (H2MSG_MSGF_ABORT | H2MSG_MSGF_DELETE));
    }
    CHECK_EQ(a.events[3].ev.kind, H2MSG_EVENT_LINK_DOWN);
    CHECK_EQ(a.events[3].ev.detail, H2MSG_DOWN_LOCAL_CLOSE);
    CHECK(strcmp(last_log, "h2msg: link down: closed locally") == 0);
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, NULL, 0), H2MSG_ERR_LINK_DOWN);
    CHECK_EQ(wait_flags(a.io), H2MSG_IOF_EOF | H2MSG_IOF_WIDLE | H2MSG_IOF_FINISHED);
    /* B's socket reports the end: its three transactions are lost too. */
    forget_events(&b);
    CHECK_EQ(h2msg_iocom_end_input(b.io), H2MSG_OK);
    drain(&b);
    CHECK_EQ(b.n_events, 4);
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(b.events[i].ev.kind, H2MSG_EVENT_ABORTED);
        CHECK_EQ(b.events[i].ev.side, H2MSG_SIDE_REMOTE);
    }
    CHECK_EQ(b.events[3].ev.kind, H2MSG_EVENT_LINK_DOWN);
    CHECK_EQ(b.events[3].ev.detail, H2MSG_DOWN_CLOSED);
    side_down(&a);
    side_down(&b);
}

/* A corrupted or cut stream ends the link with the spec's IOQ code. */
static void expect_failure(const uint8_t *wire, size_t len, int end, uint32_t detail,
                           uint32_t ioq, const char *log)
{
    struct side b;
    side_up(&b, 0, 0, 1 << 20);
    CHECK_EQ(h2msg_iocom_accept(b.io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    size_t took = 0;
    CHECK_EQ(h2msg_iocom_feed(b.io, wire, len, &took), H2MSG_OK);
    if (end)
        CHECK_EQ(h2msg_iocom_end_input(b.io), H2MSG_OK);
    drain(&b);
    const struct logged *down = find_kind(&b, H2MSG_EVENT_LINK_DOWN);
    CHECK(down != NULL);
    if (down) {
        CHECK_EQ(down->ev.detail, detail);
        CHECK_EQ(down->ev.ioq_error, ioq);
    }
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_MESSAGE), 0);
    CHECK(strcmp(last_log, log) == 0);
    CHECK_EQ(h2msg_iocom_feed(b.io, wire, len, &took), H2MSG_OK);
    CHECK_EQ(took, 0);
    side_down(&b);
}

static void test_damaged_input(void)
{
    uint8_t good[96], bad[96];
    size_t len = encode(good, H2MSG_CMD_DBG_SHELL, 0, "hello, node", 12);

    memcpy(bad, good, len);
    bad[0] = 0x00;
    expect_failure(bad, len, 0, H2MSG_DOWN_FAILED, H2MSG_IOQ_SYNC,
                   "h2msg: link down: bad magic (IOQ 1 SYNC)");
    memcpy(bad, good, len);
    bad[12] ^= 1; /* msgid changed, icrc1 not */
    expect_failure(bad, len, 0, H2MSG_DOWN_FAILED, H2MSG_IOQ_HCRC,
                   "h2msg: link down: header CRC mismatch (IOQ 5 HCRC)");
    memcpy(bad, good, len);
    bad[40] ^= 0x80; /* an aux byte */
    expect_failure(bad, len, 0, H2MSG_DOWN_FAILED, H2MSG_IOQ_ACRC,
                   "h2msg: link down: aux data CRC mismatch (IOQ 7 ACRC)");
    memcpy(bad, good, len);
    put16(bad + 26, 2049); /* aux above 65536 bytes, header CRC valid */
    reseal_icrc1(bad);
    expect_failure(bad, len, 0, H2MSG_DOWN_FAILED, H2MSG_IOQ_FIELD,
                   "h2msg: link down: size field out of range (IOQ 4 FIELD)");
    expect_failure(good, len - 10, 1, H2MSG_DOWN_FAILED, H2MSG_IOQ_EOF,
                   "h2msg: link down: stream ended inside a message (IOQ 2 EOF)");
    expect_failure(good, 20, 1, H2MSG_DOWN_FAILED, H2MSG_IOQ_EOF,
                   "h2msg: link down: stream ended inside a message (IOQ 2 EOF)");

    struct side b;
    side_up(&b, 1, 1, 1 << 20);
    CHECK_EQ(h2msg_iocom_transport_failed(b.io), H2MSG_OK);
    drain(&b);
    CHECK(b.n_events == 1 && b.events[0].ev.detail == H2MSG_DOWN_TRANSPORT &&
          b.events[0].ev.ioq_error == H2MSG_IOQ_SOCK);
    side_down(&b);
}

/* Polls one event of `s` (not logged); its aux, if any, must be `aux`. */
static uint32_t poll_kind(struct side *s, const char *aux)
{
    struct h2msg_event ev;
    CHECK_EQ(h2msg_iocom_poll(s->io, &ev), H2MSG_OK);
    if (aux)
        CHECK(ev.kind == H2MSG_EVENT_MESSAGE && ev.msg.aux &&
              memcmp(ev.msg.aux, aux, strlen(aux) + 1) == 0);
    return ev.kind;
}

/* commit_read takes bytes only into the room of the read_buf right before it: a stale
 * room (here: a poll in between reset the FIFO) must not replay the last message. */
static void test_stale_read_offer(void)
{
    struct side b;
    uint8_t m1[64], m2[64], *buf = NULL;
    size_t room = 0, len1, len2;
    uint32_t flags;
    side_up(&b, 0, 1, 1 << 20);
    CHECK_EQ(h2msg_iocom_accept(b.io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    len1 = encode(m1, H2MSG_CMD_DBG_SHELL, 0, "first", 6);
    len2 = encode(m2, H2MSG_CMD_DBG_SHELL, 0, "second", 7);
    CHECK_EQ(len1, len2);

    CHECK_EQ(h2msg_iocom_read_buf(b.io, &buf, &room), H2MSG_OK);
    CHECK(room >= len1);
    memcpy(buf, m1, len1);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, len1), H2MSG_OK);
    /* The offer is used up: a second commit is refused, even of 0 bytes. */
    CHECK_EQ(h2msg_iocom_commit_read(b.io, 0), H2MSG_ERR_STALE);

    /* read_buf, then a poll delivers m1 (and will reset the FIFO), then the socket writes
     * m2 into the old room: refused, and m1 is not delivered again. */
    CHECK_EQ(h2msg_iocom_read_buf(b.io, &buf, &room), H2MSG_OK);
    CHECK(room >= len2);
    CHECK_EQ(poll_kind(&b, "first"), H2MSG_EVENT_MESSAGE);
    memcpy(buf, m2, len2);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, len2), H2MSG_ERR_STALE);
    CHECK_EQ(poll_kind(&b, NULL), H2MSG_EVENT_NONE);

    /* Done right, m2 arrives once. */
    CHECK_EQ(h2msg_iocom_read_buf(b.io, &buf, &room), H2MSG_OK);
    CHECK(room >= len2);
    memcpy(buf, m2, len2);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, len2), H2MSG_OK);
    CHECK_EQ(poll_kind(&b, "second"), H2MSG_EVENT_MESSAGE);
    CHECK_EQ(poll_kind(&b, NULL), H2MSG_EVENT_NONE);

    /* An over-reported count leaves the offer standing; any other call withdraws it. */
    CHECK_EQ(h2msg_iocom_read_buf(b.io, &buf, &room), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, room + 1), H2MSG_ERR_OVERCOMMIT);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, 0), H2MSG_OK);
    size_t took = 0;
    CHECK_EQ(h2msg_iocom_read_buf(b.io, &buf, &room), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_feed(b.io, m1, 8, &took), H2MSG_OK);
    CHECK_EQ(took, 8);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, 8), H2MSG_ERR_STALE);
    CHECK_EQ(h2msg_iocom_read_buf(b.io, &buf, &room), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_wait_for(b.io, &flags), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, 0), H2MSG_ERR_STALE);
    CHECK_EQ(h2msg_iocom_read_buf(b.io, &buf, &room), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_end_input(b.io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_commit_read(b.io, 0), H2MSG_ERR_STALE);
    drain(&b);
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_MESSAGE), 0);
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_LINK_DOWN), 1);
    side_down(&b);
}

/* Bytes in the iocom's own block: feed refuses them anywhere in it; send, open and reply
 * take a polled message's aux as it is (FIFO or aux buffer), but not bytes of the state
 * or the transmit ring; pointers the call writes through may not lie in the block. */
static void test_overlap(void)
{
    size_t size = h2msg_iocom_size(), align = h2msg_iocom_align(), took = 99, n = 0;
    /* 64 bytes past the block, to feed from the byte right after it. */
    uint8_t *mem = aligned_alloc(align, (size + 64 + align - 1) / align * align);
    struct h2msg_kernel_ops ops = {.random_bytes = kernel_random_bytes, .log = kernel_log};
    struct h2msg_iocom *io = NULL;
    struct h2msg_event ev;
    struct h2msg_iovec iov[H2MSG_MAXIOVEC];
    uint8_t *buf = NULL, wire[32 + 64];
    size_t room = 0;
    uint32_t flags = 0;
    CHECK(mem != NULL);
    CHECK_EQ(h2msg_iocom_init(mem, size, &ops, &io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_accept(io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);

    /* feed: the read_buf room, the state, the last byte; the byte after is fine. */
    CHECK_EQ(h2msg_iocom_read_buf(io, &buf, &room), H2MSG_OK);
    memset(buf, 0, 32);
    CHECK_EQ(h2msg_iocom_feed(io, buf, 32, &took), H2MSG_ERR_OVERLAP);
    CHECK_EQ(took, 99);
    CHECK_EQ(h2msg_iocom_feed(io, mem, 32, &took), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_feed(io, mem + size - 1, 1, &took), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_feed(io, mem - 16, 17, &took), H2MSG_ERR_OVERLAP);
    CHECK_EQ(took, 99);
    CHECK_EQ(h2msg_iocom_feed(io, mem + size, 0, &took), H2MSG_OK);
    CHECK_EQ(took, 0);

    /* A 20000-byte aux (in the aux buffer) and a 60-byte one (in the FIFO), each relayed
     * by send exactly as polled. */
    static uint8_t big[32 + 20000];
    static uint8_t aux[20000];
    for (size_t i = 0; i < sizeof aux; i++)
        aux[i] = (uint8_t)(i * 13 + 1);
    size_t lens[2] = {20000, 60};
    for (int k = 0; k < 2; k++) {
        size_t len = encode(big, H2MSG_CMD_DBG_SHELL, 0, aux, lens[k]), at = 0;
        int got = 0;
        while (at < len && !got) {
            CHECK_EQ(h2msg_iocom_feed(io, big + at, len - at, &took), H2MSG_OK);
            at += took;
            CHECK_EQ(h2msg_iocom_poll(io, &ev), H2MSG_OK);
            got = ev.kind == H2MSG_EVENT_MESSAGE;
            if (!got && took == 0)
                break; /* stuck: the check below fails */
        }
        size_t padded = (lens[k] + 31) / 32 * 32;
        CHECK(got && ev.msg.aux_len == padded);
        if (!got)
            break;
        const uint8_t *in_block = ev.msg.aux;
        CHECK(in_block > mem && in_block + ev.msg.aux_len <= mem + size);
        CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, ev.msg.aux,
                                  ev.msg.aux_len),
                 H2MSG_OK);
        CHECK_EQ(h2msg_iocom_pending(io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
        CHECK(n == 1 && iov[0].iov_len == 32 + padded);
        CHECK(n == 1 && memcmp((const uint8_t *)iov[0].iov_base + 32, aux, lens[k]) == 0);
        /* From the transmit ring, or from the state: refused. */
        CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, iov[0].iov_base, 64),
                 H2MSG_ERR_OVERLAP);
        CHECK_EQ(h2msg_iocom_open(io, H2MSG_CMD_DBG_SHELL, NULL, 0, iov[0].iov_base, 32, 1, NULL),
                 H2MSG_ERR_OVERLAP);
        CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, mem + 8, 8),
                 H2MSG_ERR_OVERLAP);
        CHECK_EQ(h2msg_iocom_advance_write(io, iov[0].iov_len), H2MSG_OK);
    }
    /* reply: aux from the ring or the state, `to` in the block. */
    size_t len = encode(wire, H2MSG_CMD_DBG_SHELL | H2MSG_MSGF_CREATE, 5, "x", 2);
    CHECK_EQ(h2msg_iocom_feed(io, wire, len, &took), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_poll(io, &ev), H2MSG_OK);
    CHECK_EQ(ev.kind, H2MSG_EVENT_MESSAGE);
    CHECK_EQ(h2msg_iocom_reply(io, &ev.msg, 0, mem + 16, 16, 0), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_reply(io, (const struct h2msg_message *)(mem + 64), 0, NULL, 0, 0),
             H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_reply(io, &ev.msg, 0, ev.msg.aux, ev.msg.aux_len, 0), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_pending(io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    CHECK(n == 1 && iov[0].iov_len == 64 && ((const uint8_t *)iov[0].iov_base)[32] == 'x');

    /* Out-pointers into the block (the state) are refused before anything is written. */
    CHECK_EQ(h2msg_iocom_poll(io, (struct h2msg_event *)(mem + 64)), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_wait_for(io, (uint32_t *)(mem + 64)), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_pending(io, (struct h2msg_iovec *)(mem + 64), 1, &n), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_pending(io, iov, 1, (size_t *)(mem + 64)), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_read_buf(io, (uint8_t **)(mem + 64), &room), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_feed(io, wire, 1, (size_t *)(mem + 64)), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_open(io, H2MSG_CMD_DBG_SHELL, NULL, 0, NULL, 0, 1, (uint32_t *)(mem + 64)),
             H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_wait_for(io, &flags), H2MSG_OK);
    CHECK_EQ(flags & H2MSG_IOF_EOF, 0);
    CHECK_EQ(h2msg_iocom_fini(io), H2MSG_OK);
    free(mem);
}

/* Kernel callbacks that call back into the API on the same iocom. */
static struct h2msg_iocom *reentry_io;
static int reentry_calls, reentry_busy, reentry_logs;

static void reenter(int from_log)
{
    if (!reentry_io)
        return;
    uint32_t flags = 0;
    size_t n = 0;
    reentry_calls += 2;
    reentry_busy += h2msg_iocom_wait_for(reentry_io, &flags) == H2MSG_ERR_BUSY;
    reentry_busy += h2msg_iocom_pending(reentry_io, NULL, 0, &n) == H2MSG_ERR_BUSY;
    if (from_log) { /* after the core's step: the calls that would change most */
        struct h2msg_event ev;
        uint64_t at = 0;
        reentry_calls += 6;
        reentry_busy += h2msg_iocom_poll(reentry_io, &ev) == H2MSG_ERR_BUSY;
        reentry_busy += h2msg_iocom_timeout(reentry_io, 1) == H2MSG_ERR_BUSY;
        reentry_busy += h2msg_iocom_next_timeout(reentry_io, &at) == H2MSG_ERR_BUSY;
        reentry_busy += h2msg_iocom_set_deadline(reentry_io, H2MSG_CMD_DBG_SHELL, 1, 1) ==
                        H2MSG_ERR_BUSY;
        reentry_busy += h2msg_iocom_send(reentry_io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, NULL,
                                         0) == H2MSG_ERR_BUSY;
        reentry_busy += h2msg_iocom_fini(reentry_io) == H2MSG_ERR_BUSY;
    }
}

static void reentrant_random_bytes(void *buf, size_t len)
{
    memset(buf, random_fill, len);
    reenter(0);
}

static uint32_t reentrant_crc32c(const void *buf, size_t len, uint32_t crc)
{
    reenter(0);
    return crc32c_bitwise(buf, len, crc);
}

static void reentrant_log(const char *line)
{
    reentry_logs++;
    snprintf(last_log, sizeof last_log, "%s", line);
    reenter(1);
}

static void test_reentry(void)
{
    struct h2msg_kernel_ops ops = {
        .random_bytes = reentrant_random_bytes,
        .crc32c = reentrant_crc32c,
        .log = reentrant_log,
    };
    void *mem = iocom_memory();
    struct h2msg_iocom *io = NULL;
    struct h2msg_event ev;
    uint8_t wire[96];
    size_t took = 0;
    CHECK_EQ(h2msg_iocom_init(mem, h2msg_iocom_size(), &ops, &io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_accept(io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    reentry_io = io;
    reentry_calls = reentry_busy = reentry_logs = 0;
    /* send: random_bytes and crc32c; poll: crc32c, then the log at the link-down. */
    CHECK_EQ(h2msg_iocom_send(io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, (const uint8_t *)"hi", 3),
             H2MSG_OK);
    size_t len = encode(wire, H2MSG_CMD_DBG_SHELL, 0, "status", 7);
    CHECK_EQ(h2msg_iocom_feed(io, wire, len, &took), H2MSG_OK);
    CHECK_EQ(took, len);
    CHECK_EQ(h2msg_iocom_poll(io, &ev), H2MSG_OK);
    CHECK(ev.kind == H2MSG_EVENT_MESSAGE && ev.msg.aux && memcmp(ev.msg.aux, "status", 7) == 0);
    CHECK_EQ(h2msg_iocom_end_input(io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_poll(io, &ev), H2MSG_OK);
    CHECK_EQ(ev.kind, H2MSG_EVENT_LINK_DOWN);
    CHECK_EQ(ev.detail, H2MSG_DOWN_CLOSED);
    reentry_io = NULL;
    CHECK_EQ(reentry_logs, 1);
    CHECK(reentry_calls >= 9);
    CHECK_EQ(reentry_busy, reentry_calls);
    /* Nothing broke: the iocom answers again, its queued message is intact. */
    struct h2msg_iovec iov[H2MSG_MAXIOVEC];
    size_t n = 0;
    CHECK_EQ(h2msg_iocom_poll(io, &ev), H2MSG_OK);
    CHECK_EQ(ev.kind, H2MSG_EVENT_NONE);
    CHECK(wait_flags(io) & H2MSG_IOF_EOF);
    CHECK_EQ(h2msg_iocom_pending(io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    CHECK(n == 1 && iov[0].iov_len == 64 && memcmp((const uint8_t *)iov[0].iov_base + 32, "hi", 3) == 0);
    CHECK_EQ(h2msg_iocom_fini(io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_fini(io), H2MSG_ERR_HANDLE);
    free(mem);
}

/* A copy of a live block is refused; fini zeroes the whole block. */
static void test_block_life(void)
{
    struct side a, b;
    side_up(&a, 1, 0, 1 << 20);
    side_up(&b, 0, 1, 1 << 20);
    CHECK_EQ(h2msg_iocom_accept(a.io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_accept(b.io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    static uint8_t aux[30000];
    memset(aux, 0x77, sizeof aux);
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, aux, sizeof aux), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_send(b.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, aux, 3000), H2MSG_OK);
    CHECK(exchange(&a, &b));
    CHECK_EQ(count_kind(&b, H2MSG_EVENT_MESSAGE), 1);

    size_t size = h2msg_iocom_size();
    void *copy = iocom_memory();
    memcpy(copy, b.mem, size);
    struct h2msg_iocom *moved = copy;
    struct h2msg_event ev;
    uint32_t flags;
    size_t took;
    CHECK_EQ(h2msg_iocom_poll(moved, &ev), H2MSG_ERR_HANDLE);
    CHECK_EQ(h2msg_iocom_wait_for(moved, &flags), H2MSG_ERR_HANDLE);
    CHECK_EQ(h2msg_iocom_feed(moved, aux, 32, &took), H2MSG_ERR_HANDLE);
    CHECK_EQ(h2msg_iocom_fini(moved), H2MSG_ERR_HANDLE);
    free(copy);
    CHECK_EQ(h2msg_iocom_poll(b.io, &ev), H2MSG_OK); /* the original is fine */

    /* fini leaves no byte of state, received or queued data behind. */
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, aux, 100), H2MSG_OK);
    const uint8_t *blocks[2] = {a.mem, b.mem};
    CHECK_EQ(h2msg_iocom_fini(a.io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_fini(b.io), H2MSG_OK);
    for (int k = 0; k < 2; k++) {
        size_t nonzero = 0;
        for (size_t i = 0; i < size; i++)
            nonzero += blocks[k][i] != 0;
        CHECK_EQ(nonzero, 0);
    }
    CHECK_EQ(h2msg_iocom_poll(a.io, &ev), H2MSG_ERR_HANDLE);
    forget_events(&a);
    forget_events(&b);
    free(a.mem);
    free(b.mem);
}

/* Random bytes in random pieces: every run ends in exactly one link-down, nothing else. */
static void test_garbage(void)
{
    static uint8_t noise[6000];
    uint64_t x = 0x9E3779B97F4A7C15u;
    struct side b;
    side_up(&b, 0, 0, 1 << 20);
    CHECK_EQ(h2msg_iocom_fini(b.io), H2MSG_OK);
    int bad_runs = 0;
    for (int run = 0; run < 3000; run++) {
        struct h2msg_kernel_ops ops = {.random_bytes = kernel_random_bytes};
        CHECK_EQ(h2msg_iocom_init(b.mem, h2msg_iocom_size(), &ops, &b.io), H2MSG_OK);
        h2msg_iocom_accept(b.io, H2MSG_CMD_DBG_SHELL);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = x % sizeof noise;
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            noise[i] = (uint8_t)x;
        }
        if (run % 3 == 0 && len >= 2) /* a valid magic now and then */
            noise[0] = 0x32, noise[1] = 0x48;
        size_t at = 0, downs = 0, messages = 0;
        while (at < len) {
            size_t piece = 1 + (size_t)(x >> 40) % 700, took = 0;
            if (piece > len - at)
                piece = len - at;
            h2msg_iocom_feed(b.io, noise + at, piece, &took);
            at += took;
            struct h2msg_event ev;
            while (h2msg_iocom_poll(b.io, &ev) == H2MSG_OK && ev.kind != H2MSG_EVENT_NONE) {
                downs += ev.kind == H2MSG_EVENT_LINK_DOWN;
                messages += ev.kind == H2MSG_EVENT_MESSAGE;
            }
            if (took == 0)
                break; /* down, or nothing more wanted */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        }
        h2msg_iocom_end_input(b.io);
        struct h2msg_event ev;
        while (h2msg_iocom_poll(b.io, &ev) == H2MSG_OK && ev.kind != H2MSG_EVENT_NONE)
            downs += ev.kind == H2MSG_EVENT_LINK_DOWN;
        uint32_t flags = 0;
        h2msg_iocom_wait_for(b.io, &flags);
        if (downs != 1 || messages != 0 || !(flags & H2MSG_IOF_EOF))
            bad_runs++;
        CHECK_EQ(h2msg_iocom_fini(b.io), H2MSG_OK);
    }
    CHECK_EQ(bad_runs, 0);
    free(b.mem);
}


/* ----- time: a fake clock passed in ------------------------------------------------------- */

/* An iocom with liveness rules in ms (0: off), its memory in s->mem. */
static void side_up_timed(struct side *s, uint64_t idle, uint64_t dead, uint64_t stall)
{
    struct h2msg_kernel_ops ops = {
        .random_bytes = kernel_random_bytes,
        .crc32c = kernel_crc32c,
        .log = kernel_log,
    };
    memset(s, 0, sizeof *s);
    s->mem = iocom_memory();
    s->chunk = 1 << 20;
    CHECK_EQ(h2msg_iocom_init_liveness(s->mem, h2msg_iocom_size(), &ops, idle, dead, stall, &s->io),
             H2MSG_OK);
}

/* next_timeout as one value: the deadline, or -1 for none. */
static long long next_at(struct h2msg_iocom *io)
{
    uint64_t at = 7;
    int has = h2msg_iocom_next_timeout(io, &at);
    CHECK(has == 0 || has == 1);
    if (has == 0) {
        CHECK(at == UINT64_MAX);
        return -1;
    }
    return (long long)at;
}

/* Pending bytes of one iocom, thrown away (a transport that swallowed them); the cmd of the
 * first message, or 0 if nothing was pending. */
static uint32_t swallow(struct h2msg_iocom *io)
{
    struct h2msg_iovec iov[H2MSG_MAXIOVEC];
    size_t n = 0, total = 0;
    uint32_t cmd = 0;
    CHECK_EQ(h2msg_iocom_pending(io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    for (size_t i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (n && iov[0].iov_len >= 20) {
        const uint8_t *h = iov[0].iov_base;
        cmd = (uint32_t)h[16] | (uint32_t)h[17] << 8 | (uint32_t)h[18] << 16 | (uint32_t)h[19] << 24;
    }
    CHECK_EQ(h2msg_iocom_advance_write(io, total), H2MSG_OK);
    return cmd;
}

static struct h2msg_event poll_one(struct h2msg_iocom *io)
{
    struct h2msg_event ev;
    memset(&ev, 0xEE, sizeof ev);
    CHECK_EQ(h2msg_iocom_poll(io, &ev), H2MSG_OK);
    return ev;
}

static void test_time_misuse(void)
{
    struct side a;
    side_up_timed(&a, 100, 50, 1000);
    uint64_t at = 0;
    uint8_t raw[16];
    CHECK_EQ(h2msg_iocom_timeout(NULL, 1), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_next_timeout(NULL, &at), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_next_timeout(a.io, NULL), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_next_timeout(a.io, (uint64_t *)(raw + 1)), H2MSG_ERR_ALIGN);
    CHECK_EQ(h2msg_iocom_next_timeout(a.io, (uint64_t *)((uint8_t *)a.mem + 64)), H2MSG_ERR_OVERLAP);
    CHECK_EQ(h2msg_iocom_set_deadline(NULL, H2MSG_CMD_DBG_SHELL, 1, 1), H2MSG_ERR_NULL);
    CHECK_EQ(h2msg_iocom_timeout((struct h2msg_iocom *)((uint8_t *)a.mem + 4), 1), H2MSG_ERR_ALIGN);
    CHECK_EQ(h2msg_iocom_init_liveness(NULL, h2msg_iocom_size(), NULL, 1, 1, 1, NULL), H2MSG_ERR_NULL);
    /* Before the first timeout call the clock has not started: call at once. */
    CHECK_EQ(next_at(a.io), 0);
    CHECK_EQ(h2msg_iocom_fini(a.io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1), H2MSG_ERR_HANDLE);
    CHECK_EQ(h2msg_iocom_next_timeout(a.io, &at), H2MSG_ERR_HANDLE);
    free(a.mem);

    /* Every rule off and no deadline: the iocom never needs the time. */
    side_up_timed(&a, 0, 0, 0);
    CHECK_EQ(next_at(a.io), -1);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 123456789), H2MSG_OK);
    CHECK_EQ(next_at(a.io), -1);
    CHECK(wait_flags(a.io) & H2MSG_IOF_WIDLE);
    side_down(&a);

    /* h2msg_iocom_init: the defaults, 30 s of silence before a ping. */
    side_up(&a, 1, 0, 1000);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 5000), H2MSG_OK);
    CHECK_EQ(next_at(a.io), 35000);
    side_down(&a);
}

/* A keepalive ping after `idle` of silence; the peer's answer keeps the link up. */
static void test_keepalive(void)
{
    struct side a, b;
    side_up_timed(&a, 100, 50, 1000);
    side_up(&b, 0, 0, 1 << 20);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1000), H2MSG_OK);
    CHECK_EQ(next_at(a.io), 1100);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1099), H2MSG_OK);
    CHECK(wait_flags(a.io) & H2MSG_IOF_WIDLE); /* nothing yet */
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1100), H2MSG_OK);
    CHECK(!(wait_flags(a.io) & H2MSG_IOF_WIDLE)); /* the ping is queued */
    CHECK_EQ(next_at(a.io), 1150);               /* the dead-peer check */
    CHECK(exchange(&a, &b));
    CHECK_EQ(a.n_events, 0); /* the ping's reply is the iocom's own */
    CHECK_EQ(b.n_events, 0); /* B's iocom answered it itself */
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1150), H2MSG_OK);
    struct h2msg_event ev = poll_one(a.io);
    CHECK_EQ(ev.kind, H2MSG_EVENT_NONE);
    CHECK(!(wait_flags(a.io) & H2MSG_IOF_EOF));
    CHECK_EQ(next_at(a.io), 1250); /* silence counts again from the answer */
    /* A second silence pings again, exactly once. */
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1250), H2MSG_OK);
    CHECK_EQ(swallow(a.io) & ~H2MSG_MSGF_MASK & 0xFFFFFF00u, H2MSG_CMD_LNK_PING & 0xFFFFFF00u);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1260), H2MSG_OK);
    CHECK_EQ(swallow(a.io), 0);
    side_down(&a);
    side_down(&b);
}

/* A silent peer: the link goes down with PEER_TIMEOUT exactly at idle + dead. */
static void test_silent_peer(void)
{
    struct side a;
    side_up_timed(&a, 100, 50, 1000);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 0), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 100), H2MSG_OK);
    uint32_t cmd = swallow(a.io); /* written, never answered */
    CHECK_EQ(cmd & ~H2MSG_MSGF_MASK & 0xFFFFFF00u, H2MSG_CMD_LNK_PING & 0xFFFFFF00u);
    CHECK(cmd & H2MSG_MSGF_CREATE);
    CHECK_EQ(next_at(a.io), 150);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 149), H2MSG_OK);
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    int logs = log_lines;
    CHECK_EQ(h2msg_iocom_timeout(a.io, 150), H2MSG_OK);
    struct h2msg_event ev = poll_one(a.io);
    /* The keepalive's own transaction is reported lost first, then the link. */
    while (ev.kind == H2MSG_EVENT_ABORTED)
        ev = poll_one(a.io);
    CHECK_EQ(ev.kind, H2MSG_EVENT_LINK_DOWN);
    CHECK_EQ(ev.detail, H2MSG_DOWN_PEER_TIMEOUT);
    CHECK_EQ(ev.ioq_error, 30);
    CHECK_EQ(log_lines, logs + 1);
    CHECK(strstr(last_log, "PEERTIMEOUT") != NULL);
    CHECK(wait_flags(a.io) & H2MSG_IOF_EOF);
    CHECK_EQ(next_at(a.io), -1); /* a link that is down needs no time */
    CHECK_EQ(h2msg_iocom_timeout(a.io, 100000), H2MSG_OK);
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    side_down(&a);
}

/* A writer whose bytes the transport never takes: WRITE_STALLED after `stall`. */
static void test_write_stall(void)
{
    struct side a;
    side_up_timed(&a, 0, 0, 30);
    CHECK_EQ(next_at(a.io), 0);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 0), H2MSG_OK);
    CHECK_EQ(next_at(a.io), -1); /* nothing pending, no other rule */
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, (const uint8_t *)"x", 1),
             H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 10), H2MSG_OK); /* the bytes wait from here */
    CHECK_EQ(next_at(a.io), 40);
    /* Progress restarts the stall clock: half the bytes go at 20. */
    struct h2msg_iovec iov[H2MSG_MAXIOVEC];
    size_t n = 0;
    CHECK_EQ(h2msg_iocom_pending(a.io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    CHECK(n >= 1 && iov[0].iov_len > 2);
    CHECK_EQ(h2msg_iocom_advance_write(a.io, 2), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 20), H2MSG_OK);
    CHECK_EQ(next_at(a.io), 50);
    CHECK_EQ(h2msg_iocom_write_would_block(a.io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 49), H2MSG_OK);
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 50), H2MSG_OK);
    struct h2msg_event ev = poll_one(a.io);
    CHECK_EQ(ev.kind, H2MSG_EVENT_LINK_DOWN);
    CHECK_EQ(ev.detail, H2MSG_DOWN_WRITE_STALLED);
    CHECK_EQ(ev.ioq_error, 31);
    CHECK(strstr(last_log, "WRSTALL") != NULL);
    CHECK_EQ(h2msg_iocom_pending(a.io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
    CHECK_EQ(n, 0); /* the stalled bytes are dropped */
    CHECK_EQ(h2msg_iocom_send(a.io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, NULL, 0),
             H2MSG_ERR_LINK_DOWN);
    side_down(&a);
}

/* A clock that goes backwards counts as no time passed; a jump to the end fires each rule once. */
static void test_clock_backwards(void)
{
    struct side a;
    side_up_timed(&a, 100, 50, 1000);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1000), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 500), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 0), H2MSG_OK);
    CHECK_EQ(next_at(a.io), 1100); /* still measured from 1000 */
    CHECK_EQ(swallow(a.io), 0);
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1099), H2MSG_OK);
    CHECK_EQ(swallow(a.io), 0);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 1100), H2MSG_OK);
    CHECK(swallow(a.io) != 0); /* the ping, on time */
    CHECK_EQ(h2msg_iocom_timeout(a.io, 3), H2MSG_OK); /* backwards again: no early death */
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    CHECK_EQ(next_at(a.io), 1150);
    side_down(&a);

    /* Far ahead: no overflow, the ping once, then the end of the clock ends the link. */
    side_up_timed(&a, 100, 50, 1000);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 0), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_timeout(a.io, UINT64_MAX - 1), H2MSG_OK);
    CHECK(swallow(a.io) != 0);
    CHECK_EQ(h2msg_iocom_timeout(a.io, UINT64_MAX - 1), H2MSG_OK);
    CHECK_EQ(swallow(a.io), 0); /* not twice */
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    CHECK_EQ(h2msg_iocom_timeout(a.io, UINT64_MAX), H2MSG_OK);
    struct h2msg_event ev = poll_one(a.io);
    while (ev.kind == H2MSG_EVENT_ABORTED)
        ev = poll_one(a.io);
    CHECK_EQ(ev.kind, H2MSG_EVENT_LINK_DOWN);
    CHECK_EQ(ev.detail, H2MSG_DOWN_PEER_TIMEOUT);
    side_down(&a);
}

/* A transaction deadline: TIMED_OUT at exactly its time, an ABORT queued. */
static void test_deadline(void)
{
    struct side a;
    side_up_timed(&a, 0, 0, 0);
    uint32_t msgid = 0;
    CHECK_EQ(h2msg_iocom_open(a.io, H2MSG_CMD_DBG_SHELL, NULL, 0, NULL, 0, 0, &msgid), H2MSG_OK);
    swallow(a.io);
    CHECK_EQ(h2msg_iocom_set_deadline(a.io, H2MSG_CMD_DBG_SHELL, msgid + 1, 500),
             H2MSG_ERR_NO_TRANSACTION);
    CHECK_EQ(h2msg_iocom_set_deadline(a.io, H2MSG_CMD_DBG_SHELL | H2MSG_MSGF_REPLY, msgid, 500),
             H2MSG_ERR_NO_TRANSACTION);
    CHECK_EQ(h2msg_iocom_set_deadline(a.io, H2MSG_CMD_DBG_SHELL, msgid, 900), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_set_deadline(a.io, H2MSG_CMD_DBG_SHELL, msgid, 500), H2MSG_OK); /* moved */
    CHECK_EQ(next_at(a.io), 500);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 499), H2MSG_OK);
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    CHECK_EQ(h2msg_iocom_timeout(a.io, 500), H2MSG_OK);
    uint32_t cmd = swallow(a.io);
    CHECK((cmd & H2MSG_MSGF_ABORT) && (cmd & H2MSG_MSGF_DELETE));
    struct h2msg_event ev = poll_one(a.io);
    CHECK_EQ(ev.kind, H2MSG_EVENT_TIMED_OUT);
    CHECK_EQ(ev.side, H2MSG_SIDE_LOCAL);
    CHECK_EQ(ev.aborted, 1);
    CHECK_EQ(ev.msg.msgid, msgid);
    CHECK_EQ(poll_one(a.io).kind, H2MSG_EVENT_NONE);
    CHECK_EQ(h2msg_iocom_set_deadline(a.io, H2MSG_CMD_DBG_SHELL, msgid, 900),
             H2MSG_ERR_NO_TRANSACTION);
    CHECK_EQ(next_at(a.io), -1);
    CHECK_EQ(h2msg_iocom_close(a.io), H2MSG_OK);
    CHECK_EQ(h2msg_iocom_set_deadline(a.io, H2MSG_CMD_DBG_SHELL, msgid, 900), H2MSG_ERR_LINK_DOWN);
    side_down(&a);
}

/* ----- bidirectional flood over a socketpair ------------------------------------------------ */

#define FLOOD_MSG 65536

/* The calls in the flood's loops are checked like the rest, but counted apart (their
 * number depends on how the kernel splits reads and writes): a failure still fails. */
static unsigned long long flood_checked;
#define FLOOD_CHECK(cond)                                                                \
    do {                                                                                 \
        flood_checked++;                                                                 \
        if (!(cond)) {                                                                   \
            checks++;                                                                    \
            failures++;                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                                \
    } while (0)
#define FLOOD_EQ(got, want) FLOOD_CHECK((long long)(got) == (long long)(want))

struct flood {
    const char *name;
    struct h2msg_iocom *io;
    void *mem;
    int fd;
    int write_first;                /* the old driver: read only when nothing is pending */
    uint8_t tmpl[FLOOD_MSG];        /* what this side sends; the first 8 bytes: the index */
    uint64_t target;                /* messages each way */
    uint64_t sent, received;        /* messages queued / delivered to us */
    uint64_t sent_sum, recv_sum;    /* order-sensitive content checksums */
    uint64_t bad;                   /* messages out of order or malformed */
    int down;                       /* a link-down event came */
    double done_at;                 /* when the last message from the peer arrived */
    uint64_t reads, writes, read_while_pending;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A checksum of a message's bytes (64-bit words, unaligned-safe). */
static uint64_t content_sum(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3u;
    }
    for (; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

/* The flood's kernel CRC: SSE4.2's crc32 instruction where the CPU has it (a kernel would
 * pass its own fast CRC, e.g. DragonFly's iscsi_crc32_ext), checked against the bitwise
 * reference in test_flood; else NULL, the shim's byte-at-a-time table. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t hw_crc32c(const void *buf, size_t len,
                                                            uint32_t crc)
{
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    for (; len >= 8; len -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    for (; len; len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
static uint32_t (*flood_crc(void))(const void *, size_t, uint32_t)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? hw_crc32c : NULL;
}
#else
static uint32_t (*flood_crc(void))(const void *, size_t, uint32_t) { return NULL; }
#endif

static void flood_up(struct flood *f, const char *name, int fd, uint64_t target, uint8_t seed)
{
    struct h2msg_kernel_ops ops = {
        .random_bytes = kernel_random_bytes,
        .crc32c = flood_crc(), /* the bitwise one of the other tests would dominate */
        .log = kernel_log,
    };
    memset(f, 0, sizeof *f);
    f->name = name;
    f->fd = fd;
    f->target = target;
    uint32_t x = 0x9E3779B9u * seed + 1;
    for (size_t i = 0; i < FLOOD_MSG; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        f->tmpl[i] = (uint8_t)x;
    }
    f->mem = iocom_memory();
    /* Default liveness (30 s / 30 s / 60 s) on the real monotonic clock: a flood must
     * trip none of the rules. */
    FLOOD_EQ(h2msg_iocom_init(f->mem, h2msg_iocom_size(), &ops, &f->io), H2MSG_OK);
    FLOOD_EQ(h2msg_iocom_accept(f->io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
    FLOOD_EQ(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

static void flood_down(struct flood *f)
{
    FLOOD_EQ(h2msg_iocom_fini(f->io), H2MSG_OK);
    free(f->mem);
    close(f->fd);
}

/* Queues messages until the ring is full or all are sent. */
static void flood_queue(struct flood *f)
{
    while (f->sent < f->target) {
        memcpy(f->tmpl, &f->sent, 8);
        int r = h2msg_iocom_send(f->io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, f->tmpl, FLOOD_MSG);
        if (r == H2MSG_ERR_AGAIN)
            return;
        FLOOD_EQ(r, H2MSG_OK);
        if (r != H2MSG_OK)
            return;
        f->sent_sum = f->sent_sum * 31 + content_sum(f->tmpl, FLOOD_MSG);
        f->sent++;
    }
}

/* Polls every event: each message checked in place (its bytes live in the iocom). */
static void flood_events(struct flood *f)
{
    for (;;) {
        struct h2msg_event ev;
        int r = h2msg_iocom_poll(f->io, &ev);
        FLOOD_EQ(r, H2MSG_OK);
        if (r != H2MSG_OK || ev.kind == H2MSG_EVENT_NONE)
            return;
        if (ev.kind == H2MSG_EVENT_LINK_DOWN) {
            fprintf(stderr, "%s: link down, detail %u, ioq %u\n", f->name, ev.detail, ev.ioq_error);
            f->down = 1;
            continue;
        }
        if (ev.kind != H2MSG_EVENT_MESSAGE || ev.msg.aux_len != FLOOD_MSG) {
            f->bad++;
            continue;
        }
        uint64_t index;
        memcpy(&index, ev.msg.aux, 8);
        f->bad += index != f->received;
        f->recv_sum = f->recv_sum * 31 + content_sum(ev.msg.aux, FLOOD_MSG);
        if (++f->received == f->target)
            f->done_at = now_s();
    }
}

static int flood_pending(struct flood *f)
{
    uint32_t flags = 0;
    FLOOD_EQ(h2msg_iocom_wait_for(f->io, &flags), H2MSG_OK);
    return !(flags & H2MSG_IOF_WIDLE);
}

/* Reads what the socket has, straight into the iocom's FIFO. */
static void flood_read(struct flood *f)
{
    int pending = flood_pending(f);
    for (;;) {
        uint8_t *buf = NULL;
        size_t room = 0;
        FLOOD_EQ(h2msg_iocom_read_buf(f->io, &buf, &room), H2MSG_OK);
        if (room == 0) {
            size_t before = f->received;
            flood_events(f); /* frees the FIFO */
            if (f->received == before && !f->down)
                return;
            continue;
        }
        ssize_t n = read(f->fd, buf, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            FLOOD_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            flood_events(f);
            return;
        }
        if (n == 0) {
            FLOOD_EQ(h2msg_iocom_end_input(f->io), H2MSG_OK);
            flood_events(f);
            return;
        }
        f->reads++;
        f->read_while_pending += pending;
        FLOOD_EQ(h2msg_iocom_commit_read(f->io, (size_t)n), H2MSG_OK);
        flood_events(f);
    }
}

/* Writes what is pending until the socket is full; queues more as room frees. */
static void flood_write(struct flood *f)
{
    for (;;) {
        flood_queue(f);
        struct h2msg_iovec iov[H2MSG_MAXIOVEC];
        size_t n = 0;
        FLOOD_EQ(h2msg_iocom_pending(f->io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
        if (n == 0)
            return;
        ssize_t w = writev(f->fd, (const struct iovec *)(const void *)iov, (int)n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            FLOOD_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            FLOOD_EQ(h2msg_iocom_write_would_block(f->io), H2MSG_OK);
            return;
        }
        f->writes++;
        FLOOD_EQ(h2msg_iocom_advance_write(f->io, (size_t)w), H2MSG_OK);
    }
}

/* Drives both ends until every message arrived, the link fails, or nothing moves for
 * `idle_limit_ms` (a stall). Returns 1 if all arrived. */
static int flood_run(struct flood *a, struct flood *b, int idle_limit_ms)
{
    struct flood *f[2] = {a, b};
    uint64_t last_progress = now_ms(), last_count = 0;
    for (int i = 0; i < 2; i++)
        flood_queue(f[i]);
    while (a->received < a->target || b->received < b->target) {
        if (a->down || b->down)
            return 0;
        struct pollfd pfd[2];
        int timeout = idle_limit_ms < 1000 ? idle_limit_ms : 1000;
        for (int i = 0; i < 2; i++) {
            int pending = flood_pending(f[i]);
            pfd[i].fd = f[i]->fd;
            pfd[i].revents = 0;
            pfd[i].events = pending ? POLLOUT : 0;
            /* Full duplex: wait for input whether or not bytes are pending; the old
             * write-first driver only read when it had nothing to write. */
            if (f[i]->received < f[i]->target && !(f[i]->write_first && pending))
                pfd[i].events |= POLLIN;
            uint64_t at = 0;
            int has = h2msg_iocom_next_timeout(f[i]->io, &at);
            FLOOD_CHECK(has == 0 || has == 1);
            if (has == 1) {
                uint64_t now = now_ms();
                int wait = at <= now ? 0 : (at - now > 1000 ? 1000 : (int)(at - now));
                if (wait < timeout)
                    timeout = wait;
            }
        }
        int r = poll(pfd, 2, timeout);
        if (r < 0 && errno == EINTR)
            continue;
        FLOOD_CHECK(r >= 0);
        uint64_t now = now_ms();
        for (int i = 0; i < 2; i++) {
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                flood_read(f[i]);
            if (pfd[i].revents & (POLLOUT | POLLERR))
                flood_write(f[i]);
            FLOOD_EQ(h2msg_iocom_timeout(f[i]->io, now), H2MSG_OK);
            flood_events(f[i]);
            flood_write(f[i]); /* a keepalive the timeout queued */
        }
        uint64_t count = a->received + b->received;
        if (count != last_count) {
            last_count = count;
            last_progress = now;
        } else if (now - last_progress >= (uint64_t)idle_limit_ms) {
            return 0;
        }
    }
    return 1;
}

static void test_flood(void)
{
    const char *env = getenv("H2MSG_FLOOD_MIB");
    uint64_t mib = env ? strtoull(env, NULL, 10) : 1024;
    uint64_t target = mib * 1024 * 1024 / FLOOD_MSG;
    uint32_t (*crc)(const void *, size_t, uint32_t) = flood_crc();
    if (crc) {
        static uint8_t probe[1000];
        for (size_t i = 0; i < sizeof probe; i++)
            probe[i] = (uint8_t)(i * 13 + 7);
        CHECK_EQ(crc("123456789", 9, 0), 0xE3069283u);
        for (size_t len = 0; len < sizeof probe; len += 37)
            CHECK_EQ(crc(probe, len, 0x1234), crc32c_bitwise(probe, len, 0x1234));
    }
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    static struct flood a, b;
    flood_up(&a, "A", sv[0], target, 1);
    flood_up(&b, "B", sv[1], target, 2);
    double start = now_s();
    int ok = flood_run(&a, &b, 10000);
    double end = now_s();
    CHECK(ok);
    CHECK_EQ(a.received, target);
    CHECK_EQ(b.received, target);
    CHECK_EQ(a.sent, target);
    CHECK_EQ(b.sent, target);
    CHECK_EQ(a.bad + b.bad, 0);
    CHECK(a.recv_sum == b.sent_sum);
    CHECK(b.recv_sum == a.sent_sum);
    CHECK(a.recv_sum != b.recv_sum); /* the two directions carried different bytes */
    CHECK(!a.down && !b.down);
    /* Reads happened while this side's own bytes waited to be written. */
    CHECK(a.read_while_pending > 0 && b.read_while_pending > 0);
    double mb = (double)target * FLOOD_MSG / (1024.0 * 1024.0);
    double ab = b.done_at > start ? b.done_at - start : end - start;
    double ba = a.done_at > start ? a.done_at - start : end - start;
    printf("# flood: %llu x 64 KiB each way over a socketpair in %.2f s; A->B %.0f MiB/s, "
           "B->A %.0f MiB/s (CRC: %s); reads with own bytes pending A %llu/%llu, B %llu/%llu\n",
           (unsigned long long)target, end - start, mb / ab, mb / ba,
           crc ? "SSE4.2 via ops" : "the shim's table",
           (unsigned long long)a.read_while_pending, (unsigned long long)a.reads,
           (unsigned long long)b.read_while_pending, (unsigned long long)b.reads);
    printf("# flood: %llu calls checked in its loops (not in the count below)\n", flood_checked);
    flood_down(&a);
    flood_down(&b);

    /* The test double of the old write-first driver (read only when nothing is pending):
     * both ends fill the socket buffers and wait to write forever. */
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    flood_up(&a, "A", sv[0], 256, 1);
    flood_up(&b, "B", sv[1], 256, 2);
    a.write_first = b.write_first = 1;
    start = now_s();
    ok = flood_run(&a, &b, 300);
    CHECK(!ok);
    CHECK(a.received < 256 && b.received < 256);
    printf("# write-first double: stalled as expected after %llu + %llu of 256 messages each way "
           "(%.2f s)\n",
           (unsigned long long)a.received, (unsigned long long)b.received, now_s() - start);
    flood_down(&a);
    flood_down(&b);
}

int main(void)
{
    test_crc_reference();
    test_sizes();
    test_misuse();
    test_wire_bytes();
    test_hand_made_input();
    test_two_iocoms();
    test_damaged_input();
    test_stale_read_offer();
    test_overlap();
    test_reentry();
    test_block_life();
    test_garbage();
    test_time_misuse();
    test_keepalive();
    test_silent_peer();
    test_write_stall();
    test_clock_backwards();
    test_deadline();
    test_flood();
    printf("# %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
