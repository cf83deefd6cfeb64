/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * /dev/h2msg's ioctl, shared by the module and user space. H2MSG_IOC_ATTACH takes a
 * pointer to an int: the fd of a connected stream socket whose handshake user space has
 * completed (seed mode: the stream is plaintext from here on). The kernel takes its own
 * reference to the socket; the caller may close its fd afterwards. Errors: EFAULT (bad
 * pointer), EBADF (no such fd), ENOTSOCK (not a socket), EPROTOTYPE (not a stream
 * socket), ENOTCONN (not connected), EBUSY (a link is running already).
 */
#ifndef H2MSG_UAPI_H
#define H2MSG_UAPI_H

#include <linux/ioctl.h>

#define H2MSG_IOC_ATTACH _IOW('H', 1, int)

#endif /* H2MSG_UAPI_H */
