#!/bin/sh
# PID 1 of a test host until it execs systemd. Runs with the machine's /bin/sh inside fresh
# PID, mount, UTS, IPC and cgroup namespaces (see _host.py), so every mount made here lives
# in the host's private mount namespace and vanishes with its last process: nothing to unmount.
#
# Environment: GO (a file the harness creates when PID 1 may go on), ROOT (mount point for the host's /), LOWER/UPPER/WORK (overlay layers) or
# COPY=1 (ROOT is already a full copy of the root), HOSTNAME_, CONSOLE (a pty of the machine's,
# which the harness drains into console.log), BINDS (optional, see below).
set -eu

# Wait until the harness has moved `unshare` (our parent) out of the host's cgroup, so that
# systemd finds only its own processes there.
tries=0
until [ -e "$GO" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 600 ] || { echo "boot.sh: no go-ahead from the harness in 30 s" >&2; exit 1; }
    sleep 0.05
done

if [ "${COPY:-0}" = 1 ]; then
    mount --bind "$ROOT" "$ROOT"   # pivot_root needs a mount point
else
    mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$ROOT"
fi

mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
# Read-only /proc/sys: the host shares the machine's kernel (and network namespace), so its
# systemd-sysctl and PID 1's own tuning must not change the machine's settings.
mount --bind "$ROOT/proc/sys" "$ROOT/proc/sys"
mount -o remount,bind,ro,nosuid,nodev,noexec "$ROOT/proc/sys"
# Read-only /sys also makes systemd skip udev, as in any container.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$ROOT/sys"
# The cgroup namespace is rooted at this host's cgroup: this mount shows only its subtree.
mount -t cgroup2 -o rw,nosuid,nodev,noexec cgroup2 "$ROOT/sys/fs/cgroup"

mount -t tmpfs -o mode=755,nosuid,size=65536k tmpfs "$ROOT/dev"
for dev in null zero full random urandom tty; do
    touch "$ROOT/dev/$dev"
    mount --bind "/dev/$dev" "$ROOT/dev/$dev"
done
# systemd as PID 1 in a container logs to /dev/console (which must be a terminal).
touch "$ROOT/dev/console"
mount --bind "$CONSOLE" "$ROOT/dev/console"
mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$ROOT/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/dev/shm"
ln -s pts/ptmx "$ROOT/dev/ptmx"
ln -s /proc/self/fd "$ROOT/dev/fd"
ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$ROOT/run"

# Machine paths the test asked for (lines "ro|rw<TAB>source<TAB>target"; checked by Bind).
if [ -n "${BINDS:-}" ]; then
    tab=$(printf '\t')
    printf '%s\n' "$BINDS" | while IFS="$tab" read -r mode source target; do
        if [ -d "$source" ]; then
            mkdir -p "$ROOT$target"
        else
            mkdir -p "$(dirname "$ROOT$target")"
            [ -e "$ROOT$target" ] || touch "$ROOT$target"
        fi
        mount --bind "$source" "$ROOT$target"
        if [ "$mode" = ro ]; then
            mount -o remount,bind,ro "$ROOT$target"
        fi
    done
fi

hostname "$HOSTNAME_"

cd "$ROOT"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot

# container= tells systemd it is in a container (no udev, no getty on ttys, no hardware units).
# Capabilities no test host should use on a shared kernel leave the bounding set.
exec /usr/bin/env -i container=weft-testhost TERM=dumb \
    /usr/bin/setpriv --bounding-set=-sys_module,-sys_time,-wake_alarm \
    /lib/systemd/systemd --log-level=info
