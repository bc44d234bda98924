#!/bin/sh
# A local stand-in for python:3.11-slim, for machines that reach Debian's packages but no image
# registry: a minimal Debian bookworm with Python 3.11 and venv, imported into Docker as TAG.
# The host's own extra CA certificates (/usr/local/share/ca-certificates) go into the image, so
# pip in a build trusts what the host trusts (an egress proxy's certificate, say).
set -eu
tag="${1:-strip-inspection-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"  # mktemp made it 0700: it becomes the image's /
debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,python3-pip-whl,python3-setuptools-whl,ca-certificates,passwd \
    bookworm "$root" "$mirror"
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
fi
ln -sf python3.11 "$root/usr/bin/python3"
ln -sf python3.11 "$root/usr/bin/python"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    - "$tag"
docker image inspect --format '{{.Id}} {{.Size}}' "$tag"
