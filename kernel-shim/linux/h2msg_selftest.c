// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The self-test h2msg.ko runs at load: two iocoms in kvmalloc'ed kernel memory talk to
 * each other in memory (no socket), with the kernel's services behind them. One A side
 * uses the kernel's CRC-32C and in-place reads, the B side the shim's built-in CRC and
 * copying feeds in odd chunks, so every message also cross-checks the two CRCs.
 * A port of the user-space harness's two-iocom test (kernel-shim/tests/harness.c).
 *
 * Prints one "h2msg: selftest <name>: PASS|FAIL" line per scenario, then a summary with
 * the deepest stack use seen (measured by painting the unused part of the stack).
 */
#include <linux/kernel.h>
#include <linux/sched/task_stack.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "h2msg_kmod.h"

#define MAX_EVENTS 128
#define MAX_EXPECT 4
#define BIG 65536

struct expect {
	const u8 *aux;
	size_t len; /* the aux length as received (padded to 32) */
	u8 xor;     /* each received byte is aux[i] ^ xor; bytes past `len` of aux are 0 */
	size_t src_len; /* bytes of `aux` before the zero padding */
};

struct side {
	struct h2msg_iocom *io;
	void *mem;
	int in_place; /* receive through read_buf/commit_read instead of feed */
	size_t chunk; /* most bytes moved per transfer */
	int shell_node; /* answer DBG_SHELL commands: aux XOR 0x5A, error 0 */
	u8 *answer; /* BIG bytes for those answers */
	struct h2msg_event events[MAX_EVENTS];
	int aux_ok[MAX_EVENTS]; /* the k-th message matched expect[k] */
	size_t n_events, n_messages;
	struct expect expect[MAX_EXPECT];
	size_t n_expect;
};

struct test {
	const char *name;
	int checks, failed;
};

static int calls_failed; /* a shim call inside transfer/drain returned an error */

#define CHECK(t, cond)                                                                   \
	do {                                                                             \
		(t)->checks++;                                                           \
		if (!(cond)) {                                                           \
			(t)->failed++;                                                   \
			pr_err("h2msg: selftest %s: line %d: %s\n", (t)->name, __LINE__, \
			       #cond);                                                   \
		}                                                                        \
	} while (0)

#define CHECK_EQ(t, got, want)                                                           \
	do {                                                                             \
		long long got_ = (long long)(got), want_ = (long long)(want);            \
		(t)->checks++;                                                           \
		if (got_ != want_) {                                                     \
			(t)->failed++;                                                   \
			pr_err("h2msg: selftest %s: line %d: %s is %lld, want %lld\n",  \
			       (t)->name, __LINE__, #got, got_, want_);                  \
		}                                                                        \
	} while (0)

/* A shim call inside the pumps: counted, reported once per call site kind. */
static int call(int rc, const char *what)
{
	if (rc != H2MSG_OK) {
		calls_failed++;
		pr_err("h2msg: selftest: %s returned %d\n", what, rc);
	}
	return rc;
}

static int side_up(struct side *s, int kernel_crc, int in_place, size_t chunk)
{
	struct h2msg_kernel_ops ops = h2msg_kops;

	if (!kernel_crc)
		ops.crc32c = NULL;
	memset(s, 0, sizeof(*s));
	s->in_place = in_place;
	s->chunk = chunk;
	s->mem = h2msg_kmod_iocom_alloc();
	s->answer = kvmalloc(BIG, GFP_KERNEL);
	if (!s->mem || !s->answer)
		return -ENOMEM;
	/* init must not depend on zeroed memory */
	memset(s->mem, 0xCC, h2msg_iocom_size());
	return h2msg_iocom_init(s->mem, h2msg_iocom_size(), &ops, &s->io);
}

static void side_down(struct side *s)
{
	if (s->io)
		call(h2msg_iocom_fini(s->io), "fini");
	if (s->mem)
		h2msg_kmod_iocom_free(s->mem);
	kvfree(s->answer);
	s->io = NULL;
	s->mem = NULL;
	s->answer = NULL;
}

static void forget(struct side *s)
{
	s->n_events = 0;
	s->n_messages = 0;
	s->n_expect = 0;
}

static void expect(struct side *s, const u8 *aux, size_t src_len, size_t len, u8 xor)
{
	if (s->n_expect < MAX_EXPECT)
		s->expect[s->n_expect++] = (struct expect){ aux, len, xor, src_len };
}

/* Moves pending bytes of `from` into `to`; returns how many moved. */
static size_t transfer(struct side *from, struct side *to)
{
	size_t moved = 0;

	for (;;) {
		struct h2msg_iovec iov[H2MSG_MAXIOVEC];
		size_t n = 0, took = 0, want;

		if (call(h2msg_iocom_pending(from->io, iov, H2MSG_MAXIOVEC, &n), "pending") || !n)
			return moved;
		want = min(iov[0].iov_len, to->chunk);
		if (to->in_place) {
			u8 *buf = NULL;
			size_t room = 0;

			if (call(h2msg_iocom_read_buf(to->io, &buf, &room), "read_buf"))
				return moved;
			took = min(want, room);
			if (took) {
				memcpy(buf, iov[0].iov_base, took);
				if (call(h2msg_iocom_commit_read(to->io, took), "commit_read"))
					return moved;
			}
		} else if (call(h2msg_iocom_feed(to->io, iov[0].iov_base, want, &took), "feed")) {
			return moved;
		}
		if (!took)
			return moved; /* the receiver wants its events polled first */
		if (call(h2msg_iocom_advance_write(from->io, took), "advance_write"))
			return moved;
		moved += took;
	}
}

static int aux_matches(const struct expect *e, const struct h2msg_message *m)
{
	size_t i;

	if (m->aux_len != e->len || (e->len && !m->aux))
		return 0;
	for (i = 0; i < e->len; i++) {
		u8 want = (i < e->src_len ? e->aux[i] : 0) ^ e->xor;

		if (m->aux[i] != want)
			return 0;
	}
	return 1;
}

/* Polls every event of `s` into its log, answering shell commands; returns the count. */
static size_t drain(struct side *s)
{
	size_t polled = 0;

	for (;;) {
		struct h2msg_event ev;
		size_t k, i;

		if (call(h2msg_iocom_poll(s->io, &ev), "poll") || ev.kind == H2MSG_EVENT_NONE)
			return polled;
		polled++;
		if (s->n_events == MAX_EVENTS) {
			calls_failed++;
			pr_err("h2msg: selftest: event log full\n");
			return polled;
		}
		k = s->n_events++;
		s->events[k] = ev;
		s->aux_ok[k] = 0;
		if (ev.kind != H2MSG_EVENT_MESSAGE)
			continue;
		/* The aux pointer is only good until the next call: check it now. */
		if (s->n_messages < s->n_expect)
			s->aux_ok[k] = aux_matches(&s->expect[s->n_messages], &ev.msg);
		s->n_messages++;
		if (s->shell_node && (ev.msg.cmd & ~H2MSG_MSGF_MASK) == H2MSG_CMD_DBG_SHELL &&
		    !(ev.msg.cmd & H2MSG_MSGF_REPLY) && ev.msg.aux_len <= BIG) {
			for (i = 0; i < ev.msg.aux_len; i++)
				s->answer[i] = ev.msg.aux[i] ^ 0x5A;
			call(h2msg_iocom_reply(s->io, &ev.msg, 0, s->answer, ev.msg.aux_len, 1),
			     "reply");
		}
	}
}

/* Pumps both ways until nothing moves; false if it never settles. */
static int exchange(struct side *a, struct side *b)
{
	int round;

	for (round = 0; round < 100000; round++) {
		size_t moved = transfer(a, b) + transfer(b, a);
		size_t polled = drain(a) + drain(b);

		if (!moved && !polled)
			return 1;
		cond_resched();
	}
	return 0;
}

static size_t count_kind(const struct side *s, u32 kind)
{
	size_t i, n = 0;

	for (i = 0; i < s->n_events; i++)
		n += s->events[i].kind == kind;
	return n;
}

/* Index of the first event of `kind`, or -1. */
static int find_kind(const struct side *s, u32 kind)
{
	size_t i;

	for (i = 0; i < s->n_events; i++)
		if (s->events[i].kind == kind)
			return (int)i;
	return -1;
}

static void test_crc(struct test *t)
{
	/* CRC-32/ISCSI's check value, and a continuation across a split. */
	CHECK_EQ(t, h2msg_kops.crc32c("123456789", 9, 0), 0xE3069283u);
	CHECK_EQ(t, h2msg_kops.crc32c("6789", 4, h2msg_kops.crc32c("12345", 5, 0)), 0xE3069283u);
}

static void test_shell(struct test *t, struct side *a, struct side *b)
{
	int i;

	/* The seed era's shell: a one-way command line, a one-way reply. */
	expect(b, (const u8 *)"help", 5, 32, 0);
	expect(a, (const u8 *)"help", 5, 32, 0x5A);
	CHECK_EQ(t, h2msg_iocom_send(a->io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0,
				     (const u8 *)"help", 5), H2MSG_OK);
	CHECK(t, exchange(a, b));
	CHECK_EQ(t, count_kind(b, H2MSG_EVENT_MESSAGE), 1);
	CHECK(t, b->aux_ok[0]);
	CHECK_EQ(t, count_kind(a, H2MSG_EVENT_MESSAGE), 1);
	i = find_kind(a, H2MSG_EVENT_MESSAGE);
	CHECK(t, i >= 0 && (a->events[i].msg.cmd & H2MSG_MSGF_REPLY));
	CHECK(t, i >= 0 && a->aux_ok[i]);
}

static void test_ping(struct test *t, struct side *a, struct side *b)
{
	u32 first = 0;
	size_t i, closed = 0;

	/* 100 pings: answered by B's iocom itself, each reply closes its transaction. */
	for (i = 0; i < 100; i++) {
		u32 msgid = 0;

		CHECK_EQ(t, h2msg_iocom_open(a->io, H2MSG_CMD_LNK_PING, NULL, 0, NULL, 0, 1,
					     &msgid), H2MSG_OK);
		if (i == 0)
			first = msgid;
		if (i % 10 == 9)
			CHECK(t, exchange(a, b));
	}
	CHECK(t, exchange(a, b));
	CHECK_EQ(t, count_kind(a, H2MSG_EVENT_MESSAGE), 100);
	CHECK_EQ(t, b->n_events, 0);
	for (i = 0; i < a->n_events; i++) {
		const struct h2msg_event *ev = &a->events[i];

		closed += ev->detail == H2MSG_TRANS_CLOSED && ev->side == H2MSG_SIDE_LOCAL &&
			  ev->msg.error == 0 && (ev->msg.cmd & H2MSG_MSGF_REPLY);
	}
	CHECK_EQ(t, closed, 100);
	CHECK_EQ(t, a->events[0].msg.msgid, first);
}

static void test_64k(struct test *t, struct side *a, struct side *b, const u8 *big)
{
	u32 msgid = 0;
	int i;

	/* 64 KiB of aux A to B as a transaction, answered with 64 KiB B to A. */
	expect(b, big, BIG, BIG, 0);
	expect(a, big, BIG, BIG, 0x5A);
	CHECK_EQ(t, h2msg_iocom_open(a->io, H2MSG_CMD_DBG_SHELL, NULL, 0, big, BIG, 1, &msgid),
		 H2MSG_OK);
	CHECK(t, exchange(a, b));
	CHECK_EQ(t, count_kind(b, H2MSG_EVENT_MESSAGE), 1);
	i = find_kind(b, H2MSG_EVENT_MESSAGE);
	CHECK(t, i >= 0 && b->aux_ok[i]);
	CHECK(t, i >= 0 && b->events[i].msg.aux_units == BIG / 32);
	CHECK(t, i >= 0 && b->events[i].detail == H2MSG_TRANS_DIRECTION_CLOSED &&
		 b->events[i].side == H2MSG_SIDE_REMOTE);
	/* The header's aux CRC (sent by A with the kernel's CRC) against the kernel's CRC. */
	CHECK(t, i >= 0 && b->events[i].msg.aux_icrc == h2msg_kops.crc32c(big, BIG, 0));
	i = find_kind(a, H2MSG_EVENT_MESSAGE);
	CHECK(t, i >= 0 && a->events[i].msg.msgid == msgid && a->aux_ok[i]);
	CHECK(t, i >= 0 && a->events[i].detail == H2MSG_TRANS_CLOSED);
}

static void test_wrap(struct test *t, struct side *a, struct side *b, const u8 *big)
{
	static const u8 small[4000] = { [0 ... 3999] = 0x3C };
	struct h2msg_iovec iov[H2MSG_MAXIOVEC];
	size_t n = 0, sent = 0;
	int idle = 0;

	expect(b, big, BIG, BIG, 0);
	expect(b, small, sizeof(small), 4000, 0);
	CHECK_EQ(t, h2msg_iocom_send(a->io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, big, BIG),
		 H2MSG_OK);
	CHECK_EQ(t, h2msg_iocom_pending(a->io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
	CHECK(t, n == 1 && iov[0].iov_len == 32 + BIG);
	/* Hand B the first 65000 bytes (as a socket would), then queue 4032 more bytes. */
	while (sent < 65000) {
		size_t took = 0, want;

		if (h2msg_iocom_pending(a->io, iov, 1, &n) || n != 1) {
			CHECK(t, 0);
			break;
		}
		want = min(65000 - sent, iov[0].iov_len);
		CHECK_EQ(t, h2msg_iocom_feed(b->io, iov[0].iov_base, want, &took), H2MSG_OK);
		CHECK_EQ(t, h2msg_iocom_advance_write(a->io, took), H2MSG_OK);
		sent += took;
		/* A poll with no event can still make room (aux bytes move on): only many
		 * rounds in a row without a byte taken mean the pair is stuck. */
		idle = took ? 0 : idle + 1;
		if (!took)
			drain(b);
		if (idle > 1000) {
			CHECK(t, 0);
			break;
		}
	}
	CHECK_EQ(t, h2msg_iocom_send(a->io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, small,
				     sizeof(small)), H2MSG_OK);
	CHECK_EQ(t, h2msg_iocom_pending(a->io, iov, H2MSG_MAXIOVEC, &n), H2MSG_OK);
	CHECK_EQ(t, n, 2); /* the ring wrapped: two iovecs */
	CHECK_EQ(t, n == 2 ? iov[0].iov_len + iov[1].iov_len : 0,
		 32 + BIG - 65000 + 32 + sizeof(small));
	CHECK(t, exchange(a, b));
	CHECK_EQ(t, count_kind(b, H2MSG_EVENT_MESSAGE), 2);
	CHECK(t, b->n_events == 2 && b->aux_ok[0] && b->aux_ok[1]);
}

static void test_link_loss(struct test *t, struct side *a, struct side *b)
{
	u32 flags = 0;
	size_t i;

	/* A has three open transactions B accepted; A closes, then B's stream ends. */
	b->shell_node = 0;
	for (i = 0; i < 3; i++)
		CHECK_EQ(t, h2msg_iocom_open(a->io, H2MSG_CMD_DBG_SHELL, NULL, 0, NULL, 0, 0, NULL),
			 H2MSG_OK);
	CHECK(t, exchange(a, b));
	CHECK_EQ(t, count_kind(b, H2MSG_EVENT_MESSAGE), 3);
	CHECK_EQ(t, b->events[0].detail, H2MSG_TRANS_OPENED);
	CHECK_EQ(t, h2msg_iocom_close(a->io), H2MSG_OK);
	drain(a);
	CHECK_EQ(t, a->n_events, 4);
	CHECK_EQ(t, count_kind(a, H2MSG_EVENT_ABORTED), 3);
	for (i = 0; i < 3 && i < a->n_events; i++) {
		const struct h2msg_event *ev = &a->events[i];

		CHECK_EQ(t, ev->side, H2MSG_SIDE_LOCAL);
		CHECK_EQ(t, ev->msg.error, H2MSG_MSG_ERR_LOSTLINK);
	}
	CHECK(t, a->n_events == 4 && a->events[3].kind == H2MSG_EVENT_LINK_DOWN &&
		 a->events[3].detail == H2MSG_DOWN_LOCAL_CLOSE);
	CHECK_EQ(t, h2msg_iocom_send(a->io, H2MSG_CMD_DBG_SHELL, 0, 0, NULL, 0, NULL, 0),
		 H2MSG_ERR_LINK_DOWN);
	CHECK_EQ(t, h2msg_iocom_wait_for(a->io, &flags), H2MSG_OK);
	CHECK_EQ(t, flags, H2MSG_IOF_EOF | H2MSG_IOF_WIDLE | H2MSG_IOF_FINISHED);
	forget(b);
	CHECK_EQ(t, h2msg_iocom_end_input(b->io), H2MSG_OK);
	drain(b);
	CHECK_EQ(t, b->n_events, 4);
	CHECK_EQ(t, count_kind(b, H2MSG_EVENT_ABORTED), 3);
	CHECK(t, b->n_events == 4 && b->events[3].kind == H2MSG_EVENT_LINK_DOWN &&
		 b->events[3].detail == H2MSG_DOWN_CLOSED);
}

static int report(struct test *t)
{
	if (calls_failed) {
		t->failed += calls_failed;
		calls_failed = 0;
	}
	pr_info("h2msg: selftest %s: %s (%d checks)\n", t->name, t->failed ? "FAIL" : "PASS",
		t->checks);
	return t->failed ? 1 : 0;
}

#define PAINT 0x6Bu

/* Stack measurement: paints the unused stack below the caller, later finds the deepest
 * byte overwritten. Interrupt entry frames land there too, so it is an upper bound. */
static noinline unsigned long paint_stack(u8 **low)
{
	u8 here;
	/* Keep clear of the end-of-stack canary and of this frame and memset's. */
	u8 *base = (u8 *)task_stack_page(current) + 256;
	u8 *top = &here - 512;

	*low = base;
	if (top > base)
		memset(base, PAINT, top - base);
	return (unsigned long)top;
}

static unsigned long stack_used(u8 *low, unsigned long top)
{
	u8 *p = low;

	while ((unsigned long)p < top && *p == PAINT)
		p++;
	return top - (unsigned long)p;
}

static noinline int run_all(u8 *big)
{
	struct test tests[] = { { "crc32c" }, { "shell" }, { "ping" }, { "64k" },
				{ "wrap" }, { "linkloss" } };
	struct side *a, *b;
	int failed = 0, rc;
	size_t i;

	a = kvzalloc(sizeof(*a), GFP_KERNEL);
	b = kvzalloc(sizeof(*b), GFP_KERNEL);
	if (!a || !b) {
		pr_err("h2msg: selftest: out of memory\n");
		kvfree(a);
		kvfree(b);
		return ARRAY_SIZE(tests);
	}
	rc = side_up(a, 1, 1, 1000);
	if (!rc)
		rc = side_up(b, 0, 0, 777);
	if (rc) {
		pr_err("h2msg: selftest: iocom init failed: %d\n", rc);
		failed = ARRAY_SIZE(tests);
		goto out;
	}
	b->shell_node = 1;
	CHECK_EQ(&tests[1], h2msg_iocom_accept(a->io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);
	CHECK_EQ(&tests[1], h2msg_iocom_accept(b->io, H2MSG_CMD_DBG_SHELL), H2MSG_OK);

	test_crc(&tests[0]);
	test_shell(&tests[1], a, b);
	forget(a), forget(b);
	test_ping(&tests[2], a, b);
	forget(a), forget(b);
	test_64k(&tests[3], a, b, big);
	forget(a), forget(b);
	test_wrap(&tests[4], a, b, big);
	forget(a), forget(b);
	test_link_loss(&tests[5], a, b);
	for (i = 0; i < ARRAY_SIZE(tests); i++)
		failed += report(&tests[i]);
out:
	side_down(a);
	side_down(b);
	kvfree(a);
	kvfree(b);
	return failed;
}

int h2msg_selftest_run(void)
{
	unsigned long top, used;
	u8 *big, *low;
	size_t i;
	int failed;

	big = kvmalloc(BIG, GFP_KERNEL);
	if (!big) {
		pr_err("h2msg: selftest: out of memory\n");
		return 1;
	}
	for (i = 0; i < BIG; i++)
		big[i] = (u8)(i * 7 + (i >> 8));
	top = paint_stack(&low);
	failed = run_all(big);
	used = stack_used(low, top);
	kvfree(big);
	pr_info("h2msg: selftest done: %d failed, deepest stack use %lu bytes of %lu\n", failed,
		used, (unsigned long)THREAD_SIZE);
	return failed;
}
