#!/usr/bin/env bash
# make-bundle.sh: a signed Outpost update bundle from a root filesystem image (docs/updates.md).
#
#   image-build/make-bundle.sh --root-image ROOT.ext4 --version V --compatible C --update-key DIR --out FILE.raucb
#
# The bundle is RAUC's, 'plain' format: a squashfs holding the manifest, the root image and the hook,
# followed by a CMS signature over all of it (made with DIR/signing.key, checked against
# DIR/keyring.pem before it is written out), so a box checks every byte before it writes one.
# The manifest names the version, the compatible string (outpost-ARCH-BOOTMETHOD: RAUC refuses any
# other) and the image's sha256 and size; the hook (files/bundle-hook) refuses an older version unless
# allowed, and after RAUC wrote the slot, puts its kernel on the boot partition and carries the box's
# own files into it. build.sh --bundle runs this; test-update.sh runs it on patched root images.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root_image='' version='' compatible='' key='' out=''
while (($# > 0)); do
  case $1 in
    --root-image) root_image=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --compatible) compatible=$2; shift 2 ;;
    --update-key) key=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "make-bundle.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -f $root_image && -n $version && -n $compatible && -d $key && -n $out ]] ||
  { sed -n '4p' "$0" | sed 's/^# *//' >&2; exit 2; }
for file in signing.key signing.crt keyring.pem; do
  [[ -f $key/$file ]] || { echo "make-bundle.sh: no $key/$file (image-build/update-key.sh makes it)" >&2; exit 2; }
done
command -v rauc >/dev/null && command -v mksquashfs >/dev/null || { echo "make-bundle.sh: rauc and mksquashfs missing: run image-build/setup" >&2; exit 2; }
content=$(mktemp -d "${TMPDIR:-/var/tmp}/outpost-bundle-XXXXXX")
trap 'rm -rf "$content"' EXIT
ln "$root_image" "$content/root.ext4" 2>/dev/null || cp --sparse=always "$root_image" "$content/root.ext4"
install -m 0755 "$here/files/bundle-hook" "$content/hook"
cat >"$content/manifest.raucm" <<MANIFEST
[update]
compatible=$compatible
version=$version
description=Outpost $version
build=$(date -u +%Y-%m-%dT%H:%M:%SZ)

[bundle]
format=plain

[hooks]
filename=hook
hooks=install-check

[image.rootfs]
filename=root.ext4
hooks=post-install
MANIFEST
rm -f "$out"
started=$SECONDS
# zstd (Debian's kernels read zstd squashfs): measured on the amd64 root (1.5 GiB image, 2 loaded cores)
# level 3 gives 434 MiB in 11 s, level 15 382 MiB in 9 min, xz 348 MiB in 21 min (README.md,
# "Figures"). OUTPOST_BUNDLE_ZSTD_LEVEL (1-22) trades build time for size.
level=${OUTPOST_BUNDLE_ZSTD_LEVEL:-3}
rauc bundle --cert "$key/signing.crt" --key "$key/signing.key" --signing-keyring "$key/keyring.pem" \
  --mksquashfs-args="-comp zstd -Xcompression-level $level" "$content" "$out" >/dev/null
echo "make-bundle: $out $(du -m "$out" | cut -f1) MiB ($compatible $version) in $((SECONDS - started)) s"
