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
# keepalive_ms: the kernel pings an idle peer after 1 s (30 s by default), for the test.
if insmod /lib/modules/h2msg.ko keepalive_ms=1000; then
    echo "h2msg-test: insmod ok (uptime $start -> $(cut -d' ' -f1 /proc/uptime))"
fi
grep -E '^h2msg ' /proc/modules | sed 's/^/h2msg-test: loaded: /'

# The handed-over link over loopback: bad input, shell, pings, keepalive, garbage
# (attach-test.c), then a link that rmmod closes.
ip link set lo up
if attach-test; then
    echo "h2msg-test: attach ok"
fi
attach-test hold &
holder=$!
for i in $(seq 50); do
    grep -q 'h2msg-link' /proc/*/comm 2>/dev/null && break
    sleep 0.1
done
sleep 1
if rmmod h2msg; then
    echo "h2msg-test: rmmod ok"
fi
if wait "$holder"; then
    echo "h2msg-test: held link closed by rmmod"
fi

echo "h2msg-test: done"
poweroff -f
