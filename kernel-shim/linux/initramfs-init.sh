#!/bin/busybox sh
# /init of the boot test's initramfs (qemu-test.sh): loads h2msg.ko (its self-test runs at
# load), unloads it, powers off. Every step prints an "h2msg-test:" line the test looks for.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# KERN_INFO lines (the module's) to the console from here on.
echo 7 >/proc/sys/kernel/printk
echo "h2msg-test: init, kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu"

if h2msg --version >/dev/null 2>&1 || h2msg --help >/dev/null 2>&1; then
    echo "h2msg-test: tool runs"
fi

insmod /lib/modules/crc32c_generic.ko
insmod /lib/modules/libcrc32c.ko
start=$(cut -d' ' -f1 /proc/uptime)
if insmod /lib/modules/h2msg.ko; then
    echo "h2msg-test: insmod ok (uptime $start -> $(cut -d' ' -f1 /proc/uptime))"
fi
grep -E '^h2msg ' /proc/modules | sed 's/^/h2msg-test: loaded: /'
if rmmod h2msg; then
    echo "h2msg-test: rmmod ok"
fi

echo "h2msg-test: done"
poweroff -f
