// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * h2msg.ko: the h2msg core (through h2msg-kshim's C ABI) in a Linux module. The kernel
 * services the shim needs come from the kernel itself: get_random_bytes, libcrc32c,
 * printk, kvmalloc. At load it runs the self-test of h2msg_selftest.c.
 */
#include <linux/crc32c.h>
#include <linux/kernel.h>
#include <linux/limits.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/random.h>
#include <linux/slab.h>

#include "h2msg_kmod.h"

static bool selftest = true;
module_param(selftest, bool, 0444);
MODULE_PARM_DESC(selftest, "run the in-kernel self-test at load (default on)");

static void h2msg_k_random(void *buf, size_t len)
{
	get_random_bytes(buf, len);
}

/*
 * libcrc32c's crc32c() works on the raw register (no inversion in or out); the shim's
 * convention is DragonFly's iscsi_crc32_ext: continue from a finished CRC.
 */
static u32 h2msg_k_crc32c(const void *buf, size_t len, u32 crc)
{
	const u8 *p = buf;
	u32 reg = ~crc;

	while (len) {
		unsigned int n = len > UINT_MAX ? UINT_MAX : (unsigned int)len;

		reg = crc32c(reg, p, n);
		p += n;
		len -= n;
	}
	return ~reg;
}

static void h2msg_k_log(const char *line)
{
	/* The shim's lines start with "h2msg: " already. */
	printk(KERN_INFO "%s\n", line);
}

const struct h2msg_kernel_ops h2msg_kops = {
	.random_bytes = h2msg_k_random,
	.crc32c = h2msg_k_crc32c,
	.log = h2msg_k_log,
};

/* The Rust panic handler's hook; the freestanding proof shows no h2msg call reaches it. */
void h2msg_kernel_panic(const char *msg)
{
	panic("%s", msg);
}

void *h2msg_kmod_iocom_alloc(void)
{
	void *mem = kvmalloc(h2msg_iocom_size(), GFP_KERNEL);

	/* kmalloc and vmalloc both align to at least 8, the shim's need; checked anyway. */
	if (mem && !IS_ALIGNED((unsigned long)mem, h2msg_iocom_align())) {
		kvfree(mem);
		return NULL;
	}
	return mem;
}

void h2msg_kmod_iocom_free(void *mem)
{
	kvfree(mem);
}

static int __init h2msg_init(void)
{
	pr_info("h2msg: loaded, iocom %zu bytes aligned to %zu\n", h2msg_iocom_size(),
		h2msg_iocom_align());
	if (selftest)
		h2msg_selftest_run();
	return h2msg_link_init();
}

static void __exit h2msg_exit(void)
{
	h2msg_link_exit();
	pr_info("h2msg: unloaded\n");
}

module_init(h2msg_init);
module_exit(h2msg_exit);

/* h2msg is MIT OR Apache-2.0; MIT is GPL-compatible, hence the kernel's "Dual MIT/GPL". */
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("HAMMER2 cluster messaging (h2msg core via h2msg-kshim)");
/* crc32c() needs a crc32c shash provider loaded first. */
MODULE_SOFTDEP("pre: crc32c");
