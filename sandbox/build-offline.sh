#!/usr/bin/env bash
# Build the CPU sandbox image without pulling from a registry: debootstrap Debian bookworm,
# install the Python packages from sandbox/requirements.txt into it with the host's pip
# (same CPython 3.11 ABI), then `docker import` the tree.
# Skips the build when an image with the same input hash already exists.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tag="${1:-grader-sandbox:cpu}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
inputs_hash="$(cat "$here/build-offline.sh" "$here/requirements.txt" | sha256sum | cut -c1-16)"

if docker image inspect "$tag" --format '{{ index .Config.Labels "grader.inputs" }}' 2>/dev/null | grep -qx "$inputs_hash"; then
    echo "sandbox image $tag is up to date (inputs $inputs_hash)"
    exit 0
fi

command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
work="$(mktemp -d /var/tmp/grader-rootfs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "[1/4] debootstrap bookworm into $rootfs"
debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }

pyver="$(chroot "$rootfs" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
echo "[2/4] pip install into the image's Python $pyver"
python3 -m pip install --quiet --no-compile --no-warn-script-location \
    --python-version "$pyver" --only-binary=:all: \
    --target "$rootfs/usr/local/lib/python$pyver/dist-packages" -r "$here/requirements.txt"
# Byte-compile inside the image so start-up does not pay for it (the root fs is read-only).
chroot "$rootfs" python3 -m compileall -q -j 0 "/usr/local/lib/python$pyver/dist-packages" >/dev/null || true

echo "[3/4] users and trim"
chroot "$rootfs" groupadd --gid 1000 harness
chroot "$rootfs" useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin harness
chroot "$rootfs" groupadd --gid 1001 student
chroot "$rootfs" useradd --uid 1001 --gid 1001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin student
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

echo "[4/4] docker import as $tag"
tar -C "$rootfs" -c . | docker import \
    --change "LABEL grader.inputs=$inputs_hash" \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MPLCONFIGDIR=/tmp HOME=/tmp' \
    --change 'USER 1001:1001' \
    --change 'WORKDIR /tmp' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
docker image inspect "$tag" --format "built $tag {{.Id}} ({{.Size}} bytes)"
