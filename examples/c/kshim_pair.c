/*
 * The kernel shim from C: two h2msg connections ("iocoms") in caller memory, talking to
 * each other through this program, which plays the kernel (random bytes, a log line)
 * and the socket (it copies what one side has to write into the other).
 *
 * What a kernel module does with one link, in order:
 *   1. allocate h2msg_iocom_size() bytes aligned to h2msg_iocom_align() and init them
 *      with a table of kernel services, after the handshake (the shim starts plaintext);
 *   2. accept the commands it handles (others are answered with error 0x20);
 *   3. open transactions, poll events, reply; move bytes with pending/advance_write and
 *      feed;
 *   4. fini: the block is wiped and may be freed.
 *
 * Build and run: examples/c/run.sh. Exit status 0 only if every reply is the one asked
 * for.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2msg.h"

/* The application's command: protocol nibble 0xF (h2msg's application protocol,
 * docs/protocol.md 4.1), number 3, a 32-byte header: what Cmd::app(3) builds in Rust. */
#define CMD_REVERSE (0x00F00000u | (3u << 8) | 1u)

static int failures;

#define EXPECT(cond, ...)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            failures++;                                                                  \
            fprintf(stderr, "FAIL line %d: ", __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

/* ----- the "kernel" ------------------------------------------------------------------ */

/* A kernel passes its own source (DragonFly: karc4random_buf); here a small generator
 * is enough, the salts it feeds are not secrets. */
static void random_bytes(void *buf, size_t len)
{
    static uint32_t state = 0x12345678u;
    uint8_t *out = buf;
    while (len--) {
        state = state * 1103515245u + 12345u;
        *out++ = (uint8_t)(state >> 16);
    }
}

static void log_line(const char *line)
{
    printf("h2msg: %s\n", line);
}

/* Required to link; nothing in the shim reaches it (its CI proves that). */
void h2msg_kernel_panic(const char *msg)
{
    fprintf(stderr, "h2msg_kernel_panic: %s\n", msg);
    abort();
}

/* ----- one side ---------------------------------------------------------------------- */

static struct h2msg_iocom *side_up(void **mem)
{
    const struct h2msg_kernel_ops ops = {
        .random_bytes = random_bytes,
        .crc32c = NULL, /* the shim's own table-driven CRC-32C */
        .log = log_line,
    };
    size_t align = h2msg_iocom_align(), size = h2msg_iocom_size();
    struct h2msg_iocom *io = NULL;
    *mem = aligned_alloc(align, (size + align - 1) / align * align);
    if (!*mem) {
        perror("aligned_alloc");
        exit(2);
    }
    EXPECT(h2msg_iocom_init(*mem, size, &ops, &io) == H2MSG_OK, "init");
    EXPECT(h2msg_iocom_accept(io, CMD_REVERSE) == H2MSG_OK, "accept");
    return io;
}

/* The socket: everything `from` has to write goes into `to`. */
static void carry(struct h2msg_iocom *from, struct h2msg_iocom *to)
{
    struct h2msg_iovec iov[H2MSG_MAXIOVEC];
    size_t count = 0;
    EXPECT(h2msg_iocom_pending(from, iov, H2MSG_MAXIOVEC, &count) == H2MSG_OK, "pending");
    size_t moved = 0;
    for (size_t i = 0; i < count; i++) {
        size_t taken = 0;
        EXPECT(h2msg_iocom_feed(to, iov[i].iov_base, iov[i].iov_len, &taken) == H2MSG_OK,
               "feed");
        EXPECT(taken == iov[i].iov_len, "the receiver took %zu of %zu bytes", taken,
               iov[i].iov_len);
        moved += taken;
    }
    EXPECT(h2msg_iocom_advance_write(from, moved) == H2MSG_OK, "advance_write");
}

/* `client` asks `server` to reverse `text`; checks the one reply. */
static void transaction(struct h2msg_iocom *client, struct h2msg_iocom *server,
                        const char *text)
{
    uint8_t aux[32] = {0};
    size_t len = strlen(text);
    memcpy(aux, text, len);
    uint32_t msgid = 0;
    EXPECT(h2msg_iocom_open(client, CMD_REVERSE, NULL, 0, aux, len, 1, &msgid) == H2MSG_OK,
           "open");
    carry(client, server);

    /* The server: one request, answered with its text reversed. The event's pointers
     * stay valid until the next call on this iocom, so the reply is built first. */
    struct h2msg_event ev;
    EXPECT(h2msg_iocom_poll(server, &ev) == H2MSG_OK, "server poll");
    EXPECT(ev.kind == H2MSG_EVENT_MESSAGE, "server event kind %u", ev.kind);
    EXPECT((ev.msg.cmd & ~H2MSG_MSGF_MASK) == CMD_REVERSE, "cmd %#x", ev.msg.cmd);
    uint8_t reversed[32] = {0};
    /* The text up to its first NUL (the seed era pads aux to 32 bytes). */
    size_t n = 0;
    while (n < ev.msg.aux_len && n < sizeof reversed && ev.msg.aux[n] != 0)
        n++;
    for (size_t i = 0; i < n; i++)
        reversed[i] = ev.msg.aux[n - 1 - i];
    struct h2msg_message request = ev.msg;
    EXPECT(h2msg_iocom_reply(server, &request, 0, reversed, n, 1) == H2MSG_OK, "reply");
    EXPECT(h2msg_iocom_poll(server, &ev) == H2MSG_OK && ev.kind == H2MSG_EVENT_NONE,
           "nothing more for the server");
    carry(server, client);

    /* The client: the reply, checked against reversing here. */
    EXPECT(h2msg_iocom_poll(client, &ev) == H2MSG_OK, "client poll");
    EXPECT(ev.kind == H2MSG_EVENT_MESSAGE, "client event kind %u", ev.kind);
    EXPECT(ev.msg.msgid == msgid, "reply to msgid %u, opened %u", ev.msg.msgid, msgid);
    EXPECT(ev.msg.cmd & H2MSG_MSGF_REPLY, "a reply");
    EXPECT(ev.msg.error == 0, "error %u", ev.msg.error);
    char expected[32] = {0};
    for (size_t i = 0; i < len; i++)
        expected[i] = text[len - 1 - i];
    EXPECT(ev.msg.aux_len >= len && memcmp(ev.msg.aux, expected, len) == 0,
           "\"%s\" reversed came back as \"%.*s\"", text, (int)len, (const char *)ev.msg.aux);
    printf("\"%s\" -> \"%.*s\"\n", text, (int)len, (const char *)ev.msg.aux);
}

int main(void)
{
    void *mem_a, *mem_b;
    struct h2msg_iocom *a = side_up(&mem_a), *b = side_up(&mem_b);
    printf("two iocoms of %zu bytes each\n", h2msg_iocom_size());

    transaction(a, b, "kernel");
    transaction(b, a, "module");
    transaction(a, b, "hammer2");

    EXPECT(h2msg_iocom_fini(a) == H2MSG_OK, "fini a");
    EXPECT(h2msg_iocom_fini(b) == H2MSG_OK, "fini b");
    free(mem_a);
    free(mem_b);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all replies as asked\n");
    return 0;
}
