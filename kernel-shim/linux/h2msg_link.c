// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * The handed-over link: /dev/h2msg takes a connected socket (H2MSG_IOC_ATTACH, see
 * h2msg_uapi.h) and a kernel thread drives it through the shim with kernel_recvmsg and
 * kernel_sendmsg. The kernel answers pings (the iocom itself) and DBG_SHELL "help" and
 * "status", and pings its peer on the core's keepalive schedule. One link at a time;
 * rmmod closes it (the peer sees the stream end).
 */
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "h2msg_kmod.h"
#include "h2msg_uapi.h"

/* How long one blocking receive waits: the thread's reaction time to rmmod and timers. */
#define H2MSG_RECV_SLICE_MS 100

/* The core's liveness rules for the link (0 turns one off); the boot test shortens idle. */
static unsigned int keepalive_ms = 30000, dead_ms = 30000, stall_ms = 60000;
module_param(keepalive_ms, uint, 0444);
MODULE_PARM_DESC(keepalive_ms, "ping the peer after this much silence (ms, default 30000)");
module_param(dead_ms, uint, 0444);
MODULE_PARM_DESC(dead_ms, "then end the link after this much more (ms, default 30000)");
module_param(stall_ms, uint, 0444);
MODULE_PARM_DESC(stall_ms, "end the link when writes stall this long (ms, default 60000)");

struct h2msg_link {
	struct socket *sock; /* holds a reference to the socket's file */
	struct task_struct *thread;
	void *mem;
	struct h2msg_iocom *io;
	bool done; /* the link went down; the thread waits to be stopped */
	u64 started_ms, rx_bytes, tx_bytes, rx_msgs, shell_cmds;
	char answer[256];
};

static DEFINE_MUTEX(h2msg_link_lock); /* guards h2msg_link */
static struct h2msg_link *h2msg_link;

static u64 now_ms(void)
{
	return ktime_get_ns() / NSEC_PER_MSEC;
}

/* A DBG_SHELL command line: the aux bytes up to the first NUL or newline. */
static void answer_shell(struct h2msg_link *l, const struct h2msg_message *m)
{
	char cmd[32];
	size_t n = 0;
	int len;

	while (n < m->aux_len && n < sizeof(cmd) - 1 && m->aux[n] && m->aux[n] != '\n')
		n++;
	memcpy(cmd, m->aux, n);
	cmd[n] = 0;
	l->shell_cmds++;
	if (!strcmp(cmd, "help"))
		len = scnprintf(l->answer, sizeof(l->answer),
				"h2msg kernel link: commands: help status\n");
	else if (!strcmp(cmd, "status"))
		len = scnprintf(l->answer, sizeof(l->answer),
				"h2msg kernel link: up %llu ms, rx %llu bytes %llu msgs, tx %llu bytes, shell %llu\n",
				now_ms() - l->started_ms, l->rx_bytes, l->rx_msgs, l->tx_bytes,
				l->shell_cmds);
	else
		len = scnprintf(l->answer, sizeof(l->answer), "h2msg kernel link: unknown command: %s\n",
				cmd);
	/* The NUL goes too: the 2012 shell prints the aux as a C string. */
	h2msg_iocom_reply(l->io, m, 0, (const u8 *)l->answer, len + 1, 1);
}

/* Polls every event; returns false once the link is down. */
static bool link_events(struct h2msg_link *l)
{
	struct h2msg_event ev;

	while (h2msg_iocom_poll(l->io, &ev) == H2MSG_OK && ev.kind != H2MSG_EVENT_NONE) {
		if (ev.kind == H2MSG_EVENT_MESSAGE) {
			l->rx_msgs++;
			if ((ev.msg.cmd & ~H2MSG_MSGF_MASK) == H2MSG_CMD_DBG_SHELL &&
			    !(ev.msg.cmd & H2MSG_MSGF_REPLY))
				answer_shell(l, &ev.msg);
		} else if (ev.kind == H2MSG_EVENT_LINK_DOWN) {
			pr_info("h2msg: link ended: down kind %u, IOQ %u, rx %llu bytes, tx %llu bytes\n",
				ev.detail, ev.ioq_error, l->rx_bytes, l->tx_bytes);
			return false;
		}
	}
	return true;
}

/* Writes what the socket takes now, without blocking. */
static void link_write(struct h2msg_link *l)
{
	for (;;) {
		struct h2msg_iovec iov[H2MSG_MAXIOVEC];
		struct kvec kv[H2MSG_MAXIOVEC];
		struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
		size_t n = 0, i, total = 0;
		int rc;

		if (h2msg_iocom_pending(l->io, iov, H2MSG_MAXIOVEC, &n) || !n)
			return;
		for (i = 0; i < n; i++) {
			kv[i].iov_base = (void *)iov[i].iov_base;
			kv[i].iov_len = iov[i].iov_len;
			total += iov[i].iov_len;
		}
		rc = kernel_sendmsg(l->sock, &msg, kv, n, total);
		if (rc == -EAGAIN) {
			h2msg_iocom_write_would_block(l->io);
			return;
		}
		if (rc <= 0) {
			h2msg_iocom_transport_failed(l->io);
			return;
		}
		l->tx_bytes += rc;
		h2msg_iocom_advance_write(l->io, rc);
	}
}

/* One blocking receive of at most H2MSG_RECV_SLICE_MS, read in place. */
static void link_read(struct h2msg_link *l)
{
	struct msghdr msg = {};
	struct kvec kv;
	u8 *buf = NULL;
	size_t room = 0;
	int rc;

	if (h2msg_iocom_read_buf(l->io, &buf, &room) || !room) {
		/* No room until events are polled (they were): wait a little. */
		msleep(1);
		return;
	}
	kv.iov_base = buf;
	kv.iov_len = room;
	rc = kernel_recvmsg(l->sock, &msg, &kv, 1, room, 0);
	if (rc > 0) {
		l->rx_bytes += rc;
		h2msg_iocom_commit_read(l->io, rc);
	} else if (rc == 0) {
		h2msg_iocom_end_input(l->io);
	} else if (rc != -EAGAIN && rc != -EINTR && rc != -ERESTARTSYS) {
		h2msg_iocom_transport_failed(l->io);
	}
}

static int link_thread(void *arg)
{
	struct h2msg_link *l = arg;
	bool up = true;

	while (up && !kthread_should_stop()) {
		h2msg_iocom_timeout(l->io, now_ms()); /* keepalive ping, dead peer */
		up = link_events(l);
		if (!up)
			break;
		link_write(l);
		link_read(l);
		up = link_events(l);
	}
	if (up) {
		/* rmmod: queued bytes dropped, open transactions aborted, then the stream ends. */
		h2msg_iocom_close(l->io);
		link_events(l);
		pr_info("h2msg: link closed by rmmod\n");
	}
	kernel_sock_shutdown(l->sock, SHUT_RDWR);
	WRITE_ONCE(l->done, true);
	/* The slot is reaped by the next attach or by rmmod, which stop this thread. */
	set_current_state(TASK_INTERRUPTIBLE);
	while (!kthread_should_stop()) {
		schedule();
		set_current_state(TASK_INTERRUPTIBLE);
	}
	__set_current_state(TASK_RUNNING);
	return 0;
}

/* Stops the thread and frees the link; h2msg_link_lock held. */
static void link_reap(struct h2msg_link *l)
{
	kthread_stop(l->thread);
	h2msg_iocom_fini(l->io);
	h2msg_kmod_iocom_free(l->mem);
	sockfd_put(l->sock);
	kfree(l);
}

static int link_attach(int fd)
{
	struct h2msg_link *l;
	struct socket *sock;
	int err = 0;

	sock = sockfd_lookup(fd, &err); /* EBADF, ENOTSOCK */
	if (!sock)
		return err;
	if (sock->type != SOCK_STREAM) {
		err = -EPROTOTYPE;
		goto put;
	}
	/*
	 * The connection's own state, not sock->state: a socket connected without blocking
	 * (a connect timeout) keeps SS_CONNECTING there until connect() is called again.
	 */
	if (!sock->sk || READ_ONCE(sock->sk->sk_state) != TCP_ESTABLISHED) {
		err = -ENOTCONN;
		goto put;
	}
	mutex_lock(&h2msg_link_lock);
	if (h2msg_link && !READ_ONCE(h2msg_link->done)) {
		err = -EBUSY;
		goto unlock;
	}
	if (h2msg_link) {
		link_reap(h2msg_link);
		h2msg_link = NULL;
	}
	l = kzalloc(sizeof(*l), GFP_KERNEL);
	if (!l) {
		err = -ENOMEM;
		goto unlock;
	}
	l->mem = h2msg_kmod_iocom_alloc();
	if (!l->mem) {
		err = -ENOMEM;
		goto free;
	}
	if (h2msg_iocom_init_liveness(l->mem, h2msg_iocom_size(), &h2msg_kops, keepalive_ms,
				      dead_ms, stall_ms, &l->io) ||
	    h2msg_iocom_accept(l->io, H2MSG_CMD_DBG_SHELL)) {
		err = -EINVAL;
		goto free;
	}
	l->sock = sock;
	l->started_ms = now_ms();
	/* Blocking receives wake up this often to run timers and see rmmod. */
	sock->sk->sk_rcvtimeo = msecs_to_jiffies(H2MSG_RECV_SLICE_MS);
	l->thread = kthread_run(link_thread, l, "h2msg-link");
	if (IS_ERR(l->thread)) {
		err = PTR_ERR(l->thread);
		h2msg_iocom_fini(l->io);
		goto free;
	}
	h2msg_link = l;
	mutex_unlock(&h2msg_link_lock);
	pr_info("h2msg: link attached (fd %d)\n", fd);
	return 0;
free:
	if (l->mem)
		h2msg_kmod_iocom_free(l->mem);
	kfree(l);
unlock:
	mutex_unlock(&h2msg_link_lock);
put:
	sockfd_put(sock);
	return err;
}

static long h2msg_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	int fd;

	if (cmd != H2MSG_IOC_ATTACH)
		return -ENOTTY;
	if (get_user(fd, (int __user *)arg))
		return -EFAULT;
	return link_attach(fd);
}

static const struct file_operations h2msg_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = h2msg_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice h2msg_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "h2msg",
	.fops = &h2msg_fops,
	.mode = 0600,
};

int h2msg_link_init(void)
{
	return misc_register(&h2msg_misc);
}

void h2msg_link_exit(void)
{
	misc_deregister(&h2msg_misc); /* no new ioctl after this */
	mutex_lock(&h2msg_link_lock);
	if (h2msg_link) {
		link_reap(h2msg_link);
		h2msg_link = NULL;
	}
	mutex_unlock(&h2msg_link_lock);
}
