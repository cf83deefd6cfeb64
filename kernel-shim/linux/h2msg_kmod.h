/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Shared by the files of h2msg.ko. */
#ifndef H2MSG_KMOD_H
#define H2MSG_KMOD_H

#include "h2msg.h"

/* The kernel's services for every iocom of the module (h2msg_main.c). */
extern const struct h2msg_kernel_ops h2msg_kops;

/* An iocom's memory: kvmalloc'ed, NULL if the allocation failed. */
void *h2msg_kmod_iocom_alloc(void);
/* Zeroes and frees it (after h2msg_iocom_fini, which zeroes it already). */
void h2msg_kmod_iocom_free(void *mem);

/* Runs the in-kernel self-test: one PASS/FAIL line per scenario; returns the failures. */
int h2msg_selftest_run(void);

/* /dev/h2msg and the handed-over link (h2msg_link.c). */
int h2msg_link_init(void);
void h2msg_link_exit(void);

#endif /* H2MSG_KMOD_H */
