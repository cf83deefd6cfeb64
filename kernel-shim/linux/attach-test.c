/*
 * The peer of the kernel's handed-over link in the boot test (qemu-test.sh runs it inside
 * the VM, linked statically with a user-space build of the shim). It connects TCP sockets
 * over loopback, hands one end of each to /dev/h2msg and talks to the kernel from the
 * other end through its own iocom. The handshake is skipped: in seed mode the stream is
 * plaintext afterwards, and the kernel never sees the handshake (h2msg kernel-attach is
 * where it belongs). Every result is a line "h2msg-attach: ..."; exit status 0 only if
 * all checks passed. With "hold" as argument it ends by attaching a link and waiting for
 * the kernel to close it (rmmod), printing when the stream ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "h2msg.h"
#include "h2msg_uapi.h"

static int failures;

#define CHECK(cond, what)                                                                \
    do {                                                                                 \
        if (cond) {                                                                      \
            printf("h2msg-attach: ok: %s\n", what);                                      \
        } else {                                                                         \
            failures++;                                                                  \
            printf("h2msg-attach: FAILED: %s (line %d)\n", what, __LINE__);              \
        }                                                                                \
        fflush(stdout);                                                                  \
    } while (0)

void h2msg_kernel_panic(const char *msg)
{
    fprintf(stderr, "%s\n", msg);
    abort();
}

static void random_bytes(void *buf, size_t len)
{
    if (getrandom(buf, len, 0) != (ssize_t)len)
        memset(buf, 0x5C, len);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/*
 * A connected loopback pair: *ours and *theirs, both blocking. With `nonblocking`, *theirs
 * connects as a connect timeout does (std's connect_timeout, h2msg kernel-attach):
 * O_NONBLOCK, EINPROGRESS, poll until writable, blocking again. The kernel then leaves
 * the socket's sock->state at SS_CONNECTING, though TCP is established.
 */
static int tcp_pair_connected(int *ours, int *theirs, int nonblocking)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        return -1;
    *theirs = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (*theirs < 0)
        return -1;
    if (connect(*theirs, (struct sockaddr *)&a, sizeof a)) {
        struct pollfd pfd = { .fd = *theirs, .events = POLLOUT };
        int err = 0;
        socklen_t elen = sizeof err;
        if (!nonblocking || errno != EINPROGRESS || poll(&pfd, 1, 3000) != 1 ||
            getsockopt(*theirs, SOL_SOCKET, SO_ERROR, &err, &elen) || err)
            return -1;
    }
    if (nonblocking && fcntl(*theirs, F_SETFL, fcntl(*theirs, F_GETFL) & ~O_NONBLOCK))
        return -1;
    *ours = accept(l, NULL, NULL);
    close(l);
    return *ours < 0 ? -1 : 0;
}

static int tcp_pair(int *ours, int *theirs)
{
    return tcp_pair_connected(ours, theirs, 0);
}

static int attach(int dev, int fd)
{
    return ioctl(dev, H2MSG_IOC_ATTACH, &fd) ? errno : 0;
}

struct peer {
    int fd;
    void *mem;
    struct h2msg_iocom *io;
    char reply[512]; /* the last DBG_SHELL reply's text */
    int replies, down;
    uint32_t down_ioq;
    size_t rx_bytes;
};

static int peer_up(struct peer *p, int fd)
{
    struct h2msg_kernel_ops ops = { .random_bytes = random_bytes };
    memset(p, 0, sizeof *p);
    p->fd = fd;
    p->mem = aligned_alloc(h2msg_iocom_align(), h2msg_iocom_size());
    /* No liveness rules of its own: only the kernel's keepalive is under test. */
    if (!p->mem || h2msg_iocom_init_liveness(p->mem, h2msg_iocom_size(), &ops, 0, 0, 0, &p->io))
        return -1;
    /* DBG_SHELL replies to us, not answered by the iocom. */
    return h2msg_iocom_accept(p->io, H2MSG_CMD_DBG_SHELL);
}

static void peer_down(struct peer *p)
{
    h2msg_iocom_fini(p->io);
    free(p->mem);
    close(p->fd);
}

/* Writes everything pending, reads what comes within `ms`, polls events. */
static void pump(struct peer *p, int ms)
{
    long long end = now_ms() + ms;
    do {
        struct h2msg_iovec iov[H2MSG_MAXIOVEC];
        size_t n = 0;
        while (h2msg_iocom_pending(p->io, iov, H2MSG_MAXIOVEC, &n) == H2MSG_OK && n) {
            ssize_t w = write(p->fd, iov[0].iov_base, iov[0].iov_len);
            if (w <= 0) {
                h2msg_iocom_transport_failed(p->io);
                break;
            }
            h2msg_iocom_advance_write(p->io, (size_t)w);
        }
        struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
        long long left = end - now_ms();
        if (!p->down && poll(&pfd, 1, left > 0 ? (int)(left < 50 ? left : 50) : 0) > 0) {
            uint8_t *buf = NULL;
            size_t room = 0;
            if (h2msg_iocom_read_buf(p->io, &buf, &room) == H2MSG_OK && room) {
                ssize_t r = read(p->fd, buf, room);
                if (r > 0) {
                    p->rx_bytes += (size_t)r;
                    h2msg_iocom_commit_read(p->io, (size_t)r);
                } else if (r == 0) {
                    h2msg_iocom_end_input(p->io);
                } else {
                    h2msg_iocom_transport_failed(p->io);
                }
            }
        }
        struct h2msg_event ev;
        while (h2msg_iocom_poll(p->io, &ev) == H2MSG_OK && ev.kind != H2MSG_EVENT_NONE) {
            if (ev.kind == H2MSG_EVENT_MESSAGE && (ev.msg.cmd & H2MSG_MSGF_REPLY) &&
                (ev.msg.cmd & ~H2MSG_MSGF_MASK) == H2MSG_CMD_DBG_SHELL) {
                size_t n2 = ev.msg.aux_len < sizeof p->reply - 1 ? ev.msg.aux_len : sizeof p->reply - 1;
                memcpy(p->reply, ev.msg.aux, n2);
                p->reply[n2] = 0;
                p->replies++;
            } else if (ev.kind == H2MSG_EVENT_MESSAGE && (ev.msg.cmd & H2MSG_MSGF_REPLY) &&
                       (ev.msg.cmd & ~H2MSG_MSGF_MASK) == H2MSG_CMD_LNK_PING) {
                p->replies++;
            } else if (ev.kind == H2MSG_EVENT_LINK_DOWN) {
                p->down = 1;
                p->down_ioq = ev.ioq_error;
            }
        }
    } while (now_ms() < end && !p->down);
}

static const char *shell(struct peer *p, const char *line)
{
    int before = p->replies;
    h2msg_iocom_send(p->io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, (const uint8_t *)line,
                     strlen(line) + 1);
    for (int i = 0; i < 100 && p->replies == before && !p->down; i++)
        pump(p, 50);
    return p->replies > before ? p->reply : "";
}

int main(int argc, char **argv)
{
    int hold = argc > 1 && strcmp(argv[1], "hold") == 0;
    int dev = open("/dev/h2msg", O_RDWR);
    CHECK(dev >= 0, "/dev/h2msg opens");
    if (dev < 0)
        return 1;

    if (!hold) {
        /* Bad input, each with its errno. */
        int file = open("/init", O_RDONLY);
        CHECK(attach(dev, file) == ENOTSOCK, "a regular file is refused with ENOTSOCK");
        close(file);
        CHECK(attach(dev, 9999) == EBADF, "a closed fd number is refused with EBADF");
        int unconnected = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(attach(dev, unconnected) == ENOTCONN, "an unconnected socket is refused with ENOTCONN");
        close(unconnected);
        int dgram = socket(AF_INET, SOCK_DGRAM, 0);
        CHECK(attach(dev, dgram) == EPROTOTYPE, "a datagram socket is refused with EPROTOTYPE");
        close(dgram);
        CHECK(ioctl(dev, H2MSG_IOC_ATTACH, (void *)16) == -1 && errno == EFAULT,
              "a bad argument pointer is refused with EFAULT");
        CHECK(ioctl(dev, _IO('H', 99), 0) == -1 && errno == ENOTTY, "an unknown ioctl is ENOTTY");

        /* Link 1: shell, pings, keepalive, a second attach refused, then the peer closes. */
        int ours, theirs;
        struct peer p;
        CHECK(tcp_pair(&ours, &theirs) == 0 && peer_up(&p, ours) == H2MSG_OK, "loopback pair and peer iocom");
        CHECK(attach(dev, theirs) == 0, "a connected TCP socket is attached");
        close(theirs); /* the kernel holds its own reference */
        const char *help = shell(&p, "help");
        CHECK(strstr(help, "commands: help status") != NULL, "DBG_SHELL help answered by the kernel");
        printf("h2msg-attach: help: %s", help);
        int pings = p.replies;
        for (int i = 0; i < 5; i++)
            h2msg_iocom_open(p.io, H2MSG_CMD_LNK_PING, NULL, 0, NULL, 0, 1, NULL);
        for (int i = 0; i < 40 && p.replies < pings + 5; i++)
            pump(&p, 50);
        CHECK(p.replies == pings + 5, "5 LNK_PINGs answered by the kernel");
        int o2, t2;
        CHECK(tcp_pair(&o2, &t2) == 0 && attach(dev, t2) == EBUSY,
              "a second attach while the link runs is refused with EBUSY");
        close(o2);
        close(t2);
        /* Silence from us: the kernel's keepalive (idle_ms=1000 in the test) pings us. */
        size_t rx_before = p.rx_bytes;
        pump(&p, 2500);
        CHECK(p.rx_bytes >= rx_before + 32, "the kernel pings an idle peer (keepalive)");
        const char *status = shell(&p, "status");
        CHECK(strstr(status, "rx ") && strstr(status, "shell 2"), "DBG_SHELL status answered with counters");
        printf("h2msg-attach: status: %s", status);
        peer_down(&p); /* the kernel logs the peer's close */
        usleep(300000);

        /*
         * Link 2, over a socket connected without blocking: garbage from the peer ends the
         * link with its IOQ code (in the kernel log).
         */
        CHECK(tcp_pair_connected(&ours, &theirs, 1) == 0 && attach(dev, theirs) == 0,
              "a new link, connected without blocking, is attached after the first one ended");
        close(theirs);
        char garbage[64];
        memset(garbage, 0xEE, sizeof garbage);
        CHECK(write(ours, garbage, sizeof garbage) == (ssize_t)sizeof garbage, "64 bytes of garbage sent");
        char byte;
        struct pollfd pfd = { .fd = ours, .events = POLLIN };
        CHECK(poll(&pfd, 1, 3000) == 1 && read(ours, &byte, 1) == 0,
              "the kernel ends the stream after garbage");
        close(ours);
        usleep(300000);
    } else {
        /* Link 3: stays up until rmmod closes it. */
        int ours, theirs;
        struct peer p;
        CHECK(tcp_pair(&ours, &theirs) == 0 && peer_up(&p, ours) == H2MSG_OK &&
                  attach(dev, theirs) == 0, "link attached, waiting for rmmod");
        close(theirs);
        close(dev);
        dev = -1;
        CHECK(strstr(shell(&p, "help"), "help status") != NULL, "the held link answers");
        printf("h2msg-attach: holding\n");
        fflush(stdout);
        pump(&p, 20000);
        CHECK(p.down, "the stream ended when the module was unloaded");
        peer_down(&p);
    }
    if (dev >= 0)
        close(dev);
    printf("h2msg-attach: %s\n", failures ? "FAILED" : "all passed");
    return failures != 0;
}
