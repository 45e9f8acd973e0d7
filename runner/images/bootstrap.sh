#!/usr/bin/env bash
# Build the images Conveyor's tests and samples use, without any registry:
#   conveyor-test/busybox:1    from Debian's busybox-static
#   conveyor-test/python:3.11  from a debootstrap'd Debian bookworm (minbase + python3)
# Idempotent: an image that already exists is left alone (pass --force to rebuild).
# Needs root for debootstrap, and `apt-get` to install busybox-static/debootstrap when missing.
set -euo pipefail

force=0
[ "${1:-}" = "--force" ] && force=1
mirror="${CONVEYOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="${CONVEYOR_DEBIAN_SUITE:-bookworm}"

have_image() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

need_pkg() {  # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$1" ] && return 0
    [ -x "/bin/$1" ] && return 0
    echo "installing $2 (needed for $1)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if have_image conveyor-test/busybox:1; then
    echo "conveyor-test/busybox:1 present"
else
    [ -x /bin/busybox ] && /bin/busybox --help 2>&1 | grep -q static || need_pkg busybox busybox-static
    dpkg -s busybox-static >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
    mkdir -p "$work/bb"
    cp /bin/busybox "$work/bb/busybox"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$work/bb/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/bb/group"
    cat > "$work/bb/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
COPY passwd group /etc/
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/tmp", "/root", "/var/www"]
RUN ["/bin/busybox", "--install", "-s"]
RUN ["/bin/chmod", "1777", "/tmp"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
DOCKERFILE
    docker build -q -t conveyor-test/busybox:1 "$work/bb" >/dev/null
    echo "built conveyor-test/busybox:1"
fi

if have_image conveyor-test/python:3.11; then
    echo "conveyor-test/python:3.11 present"
else
    need_pkg debootstrap debootstrap
    root="$work/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; echo "debootstrap failed (mirror $mirror)" >&2; exit 1; }
    chroot "$root" ln -sf /usr/bin/python3 /usr/local/bin/python
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
    tar -C "$root" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV LANG=C.UTF-8' \
        -c 'CMD ["python3"]' - conveyor-test/python:3.11 >/dev/null
    echo "built conveyor-test/python:3.11"
fi
