#!/bin/busybox sh
# /init of the boot test's initramfs (qemu-test.sh): loads h2msg.ko (its self-test runs at
# load), drives the handed-over link from attach-test.c, unloads it; loads it again for a
# link that `h2msg kernel-attach` hands over from a handshake with `h2msg service`,
# unloads it, powers off. Every step prints an "h2msg-test:" line the test looks for.
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

# The tool's handover (kernel-attach) against the tool's service, over an RSA handshake
# with the keys qemu-test.sh made at pack time (/etc/h2msg/{service,client}, each trusting
# the other's key for 127.0.0.1).
PORT=9870
SERVICE_LOG=/tmp/service.log
h2msg --keydir /etc/h2msg/service -v service --listen 127.0.0.1:$PORT >$SERVICE_LOG 2>&1 &
service=$!
for i in $(seq 100); do
    grep -q 'listening on' $SERVICE_LOG && break
    sleep 0.1
done
grep -q 'listening on' $SERVICE_LOG && echo "h2msg-test: service listening on 127.0.0.1:$PORT"

# No module: the tool says so, before it bothers the service.
if out=$(h2msg --keydir /etc/h2msg/client kernel-attach 127.0.0.1:$PORT 2>&1); then
    echo "h2msg-test: UNEXPECTED: kernel-attach without the module succeeded: $out"
else
    echo "h2msg-test: kernel-attach without the module: $out"
fi

if insmod /lib/modules/h2msg.ko keepalive_ms=1000 selftest=0; then
    echo "h2msg-test: insmod again ok"
fi
start=$(cut -d' ' -f1 /proc/uptime)
out=$(h2msg --keydir /etc/h2msg/client kernel-attach 127.0.0.1:$PORT 2>&1)
rc=$?
echo "h2msg-test: kernel-attach said: $out (uptime $start -> $(cut -d' ' -f1 /proc/uptime))"
# "kernel link up: 127.0.0.1:LOCAL to 127.0.0.1:PORT (rsa seed), handed to /dev/h2msg"
kernel_end=$(echo "$out" | sed -n 's/^kernel link up: \([^ ]*\) to .*/\1/p')
if [ $rc -eq 0 ] && [ -n "$kernel_end" ]; then
    echo "h2msg-test: kernel-attach ok"
fi

# One link at a time: a second handover is refused with EBUSY, explained.
if out=$(h2msg --keydir /etc/h2msg/client kernel-attach 127.0.0.1:$PORT 2>&1); then
    echo "h2msg-test: UNEXPECTED: a second kernel-attach succeeded: $out"
else
    echo "h2msg-test: second kernel-attach: $out"
fi

# The kernel pings the idle service every second (keepalive_ms=1000) and the service
# answers: its `status` shows the kernel's link with messages received and answered.
# Asked until it does (at most 30 times, a second apart).
# Each ask is an RSA handshake, seconds under TCG; the kernel pings meanwhile.
answered=
line=
for i in $(seq 30); do
    [ -n "$kernel_end" ] || break
    sleep 1
    line=$(echo status | h2msg --keydir /etc/h2msg/client shell 127.0.0.1:$PORT 2>/dev/null |
        grep -F " $kernel_end " | head -n 1)
    case "$line" in
    *"received 0 "*|*"auto-answered 0 "*|"") ;;
    *) answered=$line; break ;;
    esac
done
echo "h2msg-test: service status, the kernel's link:$line"
if [ -n "$answered" ] && [ -n "$kernel_end" ]; then
    echo "h2msg-test: service status shows the kernel link's pings answered"
fi

if rmmod h2msg; then
    echo "h2msg-test: rmmod with the kernel link ok"
fi
closed=
for i in $(seq 50); do
    if grep -qF "($kernel_end): closed" $SERVICE_LOG; then
        closed=1
        break
    fi
    sleep 0.1
done
sed 's/^/h2msg-test: service log: /' $SERVICE_LOG
if [ -n "$closed" ] && [ -n "$kernel_end" ]; then
    echo "h2msg-test: service logged the kernel link's close"
fi
kill -TERM $service
if wait $service; then
    echo "h2msg-test: service stopped"
fi

echo "h2msg-test: done"
poweroff -f
