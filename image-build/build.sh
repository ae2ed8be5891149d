#!/usr/bin/env bash
# Builds Outpost's SD-card image from Debian 12 packages, without loop mounts (image-build/README.md).
#
#   image-build/build.sh --arch arm64|amd64 [--out DIR] [--work DIR] [--read-write-root]
#                        [--no-compress] [--reuse-root] [--from-raspios IMAGE] [--list-stages]
#
# Stages (each prints what it does and how long it took; a failure names the stage and keeps the work
# folder): compile → rootfs (mmdebstrap + outpost-files + node-modules hooks) → manifest → bootfs →
# disk → compress. Output in --out (default image-build/out): outpost-ARCH.img, .img.xz, .sha256,
# .manifest (package versions), and for amd64 the kernel + initrd that test-image.sh boots directly.
# The root is remounted read-only after first boot unless --read-write-root (README.md, "Read-only root").
# Re-runs reuse the package caches in WORK/cache (apt .debs, the Node tarball, npm's cache).
# --from-raspios IMAGE hands over to stages/from-raspios.sh, a skeleton: run once on a stand-in image,
# never on a real Raspberry Pi OS image, never booted (README.md, "--from-raspios IMAGE").
# --reuse-root skips compile and rootfs and carries on from the root folder an earlier run left in
# WORK/build-ARCH/root (after a failure in a later stage, or a root finished by hand).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

STAGES=(compile rootfs manifest bootfs disk compress)
arch='' out=$here/out work=${OUTPOST_IMAGE_WORK:-/var/tmp/outpost-image} read_only=1 raspios='' compress=1 reuse_root=0
usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 2; }
while (($# > 0)); do
  case $1 in
    --arch) arch=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --work) work=${2:-}; shift 2 ;;
    --read-only-root) read_only=1; shift ;; # the default; kept for scripts that name it
    --read-write-root) read_only=0; shift ;;
    --no-compress) compress=0; shift ;;
    --reuse-root) reuse_root=1; shift ;;
    --from-raspios) raspios=${2:-}; shift 2 ;;
    --list-stages) printf '%s\n' "${STAGES[@]}"; exit 0 ;;
    -h | --help) usage ;;
    *) echo "build.sh: unknown option $1" >&2; usage ;;
  esac
done
[[ $arch == arm64 || $arch == amd64 ]] || { echo "build.sh: --arch arm64 or --arch amd64" >&2; usage; }
[[ $(id -u) == 0 ]] || { echo "build.sh: run as root (mmdebstrap in root mode, chroot, file ownership)" >&2; exit 2; }
if [[ -n $raspios ]]; then
  exec "$here/stages/from-raspios.sh" "$raspios" --out "$out" --work "$work"
fi

disk_id=4f757470
build=$work/build-$arch
cache=$work/cache
rootdir=$build/root
name=outpost-$arch
mkdir -p "$out" "$cache/apt-$arch" "$build"
out=$(cd "$out" && pwd)
export LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
nice=(nice -n 10)

current_stage=''
trap 'status=$?; if ((status != 0)); then echo "build.sh: stage \"$current_stage\" failed (exit $status); work folder kept: $build" >&2; fi' EXIT
stage() {
  current_stage=$1
  shift
  local started=$SECONDS
  echo "==> [$current_stage] $*"
  "stage_$current_stage"
  echo "<== [$current_stage] done in $((SECONDS - started)) s"
}

# --- compile: the TypeScript, on the build machine (never on the box)
stage_compile() { (cd "$repo" && npm run --silent build); }

# --- rootfs: Debian 12 with mmdebstrap, Outpost installed into it by the customize hooks
packages_common=(
  systemd-sysv udev dbus kmod iproute2 procps less ca-certificates dosfstools e2fsprogs
  # sfdisk: outpost-grow-data grows the data partition to the card at boot (resize2fs: e2fsprogs)
  fdisk
  initramfs-tools
  # GStreamer runtime and the plugins the daemon's pipelines use (videotestsrc, x264enc, rtp, srtp, mp4mux)
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  # field checks, time
  mosquitto-clients chrony
)
packages_amd64=(linux-image-amd64)
# Pi 3/4/Zero 2/CM4: Debian's arm64 kernel and the Pi's boot firmware; libcamera's GStreamer source.
packages_arm64=(linux-image-arm64 raspi-firmware gstreamer1.0-libcamera)

stage_rootfs() {
  local -n extra=packages_$arch
  local include
  include=$(IFS=,; echo "${packages_common[*]},${extra[*]}")
  if [[ $arch == arm64 && $(uname -m) != aarch64 ]]; then
    # qemu-user-static registers its interpreters with binfmt_misc; make sure that is mounted and on.
    [[ -e /proc/sys/fs/binfmt_misc/status ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || { echo "rootfs: no qemu-aarch64 binfmt: run image-build/setup" >&2; return 1; }
  fi
  rm -rf "$rootdir"
  local mirror=http://deb.debian.org/debian
  local ro_flag=()
  ((read_only)) && ro_flag=(--read-only-root)
  # The setup hook writes /etc/default/raspi-firmware before any package is installed: the Pi's
  # firmware package writes cmdline.txt's root= from it when the kernel is installed (force-confold:
  # dpkg keeps that file instead of stopping at a conffile question).
  # shellcheck disable=SC2016 # $1 is expanded by mmdebstrap's hook shell
  "${nice[@]}" mmdebstrap --mode=root --variant=apt --arch="$arch" \
    --components=main,non-free-firmware --include="$include" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='force-confdef' --dpkgopt='force-confold' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/ "$1"/etc/default "$1"/boot/firmware' \
    --setup-hook="sync-in $cache/apt-$arch /var/cache/apt/archives/" \
    --setup-hook="printf 'ROOTPART=PARTUUID=$disk_id-02\n' > \"\$1\"/etc/default/raspi-firmware" \
    --customize-hook="$here/stages/install-outpost.sh \"\$1\" --disk-id $disk_id ${ro_flag[*]}" \
    --customize-hook="$here/stages/node-modules.sh \"\$1\" $arch $cache" \
    --customize-hook="sync-out /var/cache/apt/archives $cache/apt-$arch" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb; : > "$1"/etc/machine-id; rm -f "$1"/var/lib/dbus/machine-id' \
    bookworm "$rootdir" \
    "deb $mirror bookworm main non-free-firmware" \
    "deb $mirror bookworm-updates main non-free-firmware" \
    "deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware"
}

# --- manifest: every package and its version, as dpkg knows them in the root
stage_manifest() {
  dpkg-query --admindir="$rootdir/var/lib/dpkg" -W -f='${Package}\t${Version}\t${Architecture}\n' |
    sort >"$out/$name.manifest"
  # Node is not a Debian package: its line says where it came from (npm ci's tree is package-lock.json).
  printf 'node-linux-%s\t%s\tnpm registry, sha512 in image-build/node.lock\n' "$([[ $arch == amd64 ]] && echo x64 || echo arm64)" \
    "$(awk '$1 == "version" {print $2}' "$here/node.lock")" >>"$out/$name.manifest"
  echo "manifest: $(wc -l <"$out/$name.manifest") packages; node $(awk '$1 == "version" {print $2}' "$here/node.lock") (node.lock)"
}

# --- bootfs: the FAT boot partition's content, moved out of the root (mounted there on the box)
stage_bootfs() {
  local bootfs=$build/bootfs kernel initrd
  rm -rf "$bootfs" && mkdir -p "$bootfs"
  kernel=$(find "$rootdir/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
  initrd=$(find "$rootdir/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -1)
  [[ -n $kernel && -n $initrd ]] || { echo "bootfs: no kernel or initrd in $rootdir/boot" >&2; return 1; }
  if [[ $arch == arm64 ]]; then
    # raspi-firmware's kernel and initramfs hooks filled /boot/firmware: the Pi's firmware, the DTBs,
    # the kernel and initrd, config.txt, and cmdline.txt with root= from /etc/default/raspi-firmware
    # (ROOTPART, set before the kernel was installed) and the serial console for each Pi model.
    cp -r "$rootdir/boot/firmware/." "$bootfs/"
    for file in config.txt cmdline.txt start4.elf bootcode.bin; do
      [[ -f $bootfs/$file ]] || { echo "bootfs: raspi-firmware left no $file in /boot/firmware" >&2; return 1; }
    done
    grep -q "root=PARTUUID=$disk_id-02" "$bootfs/cmdline.txt" ||
      { echo "bootfs: cmdline.txt does not name PARTUUID=$disk_id-02: $(cat "$bootfs/cmdline.txt")" >&2; return 1; }
    echo "bootfs: cmdline.txt: $(cat "$bootfs/cmdline.txt")"
  else
    # amd64 twin: qemu boots the kernel directly (-kernel/-initrd/-append, test-image.sh); the copies
    # here keep the partition's layout the same as the Pi's, and cmdline.txt documents the command line.
    cp "$kernel" "$bootfs/vmlinuz"
    cp "$initrd" "$bootfs/initrd.img"
    echo "console=ttyS0,115200 root=PARTUUID=$disk_id-02 rootfstype=ext4 rootwait ro" >"$bootfs/cmdline.txt"
    cp "$kernel" "$out/$name.vmlinuz"
    cp "$initrd" "$out/$name.initrd.img"
    cp "$bootfs/cmdline.txt" "$out/$name.cmdline"
  fi
  cat >"$bootfs/README-outpost.txt" <<'TXT'
Outpost boot partition. To provision this box, put its bundle here as outpost-bundle.json
(outpost-provision bundle NAME --out /path/to/this/partition/outpost-bundle.json); it is applied and
wiped at first boot. Optionally pin the site CA with outpost-ca.sha256 (docs/provisioning.md).
TXT
  rm -rf "${rootdir:?}/boot/firmware" && install -d -m 0755 "$rootdir/boot/firmware"
  du -sh "$bootfs" | sed 's/^/bootfs: /'
}

# --- disk: FAT (mkfs.vfat on a file + mcopy), ext4 root and data (mkfs.ext4 -d), MBR by sfdisk,
# assembled with dd conv=notrunc. No loop device, no mount.
boot_mib=256 data_mib=128
stage_disk() {
  local img=$build/$name.img root_mib used_kib
  rm -f "$build"/*.vfat "$build"/*.ext4 "$img"
  truncate -s "${boot_mib}M" "$build/boot.vfat"
  mkfs.vfat -F 32 -n BOOTFS -i "$disk_id" "$build/boot.vfat" >/dev/null
  mcopy -s -p -i "$build/boot.vfat" "$build/bootfs"/* ::/
  used_kib=$(du -sk --exclude=./proc --exclude=./sys "$rootdir" | cut -f1)
  root_mib=$(((used_kib * 13 / 10) / 1024 + 256)) # 30% + 256 MiB for inodes, journal, apt, logs
  mkfs.ext4 -q -F -L rootfs -O ^metadata_csum_seed -E lazy_itable_init=0 -d "$rootdir" "$build/root.ext4" "${root_mib}M"
  mkdir -p "$build/data-empty"
  # 4 KiB blocks and an inode per 64 KiB (clips, LevelDB tables: few, large files), not mke2fs's
  # "small" type (1 KiB blocks, an inode per 4 KiB) that a 128 MiB filesystem would get and keep when
  # it grows to the card at boot; GDT reserved for online growth up to 2 TiB (MBR's limit).
  mkfs.ext4 -q -F -L outpost-data -b 4096 -i 65536 -E resize=536870912 -d "$build/data-empty" "$build/data.ext4" "${data_mib}M"
  local boot_start=2048 boot_size=$((boot_mib * 2048))
  local root_start=$((boot_start + boot_size)) root_size=$((root_mib * 2048))
  local data_start=$((root_start + root_size)) data_size=$((data_mib * 2048))
  truncate -s $(((data_start + data_size) * 512)) "$img"
  sfdisk --quiet "$img" <<SFDISK
label: dos
label-id: 0x$disk_id
unit: sectors
start=$boot_start, size=$boot_size, type=c, bootable
start=$root_start, size=$root_size, type=83
start=$data_start, size=$data_size, type=83
SFDISK
  dd if="$build/boot.vfat" of="$img" bs=512 seek=$boot_start conv=notrunc,sparse status=none
  dd if="$build/root.ext4" of="$img" bs=512 seek=$root_start conv=notrunc,sparse status=none
  dd if="$build/data.ext4" of="$img" bs=512 seek=$data_start conv=notrunc,sparse status=none
  rm -f "$build"/*.vfat "$build"/*.ext4
  mv "$img" "$out/$name.img"
  sfdisk --dump "$out/$name.img" | sed 's/^/disk: /'
  echo "disk: $out/$name.img $(du -h --apparent-size "$out/$name.img" | cut -f1) (root ${root_mib} MiB, ${used_kib} KiB used)"
}

# --- compress: .img.xz and the checksums of both
stage_compress() {
  rm -f "$out/$name.img.xz"
  "${nice[@]}" xz -T2 "-${OUTPOST_XZ_LEVEL:-6}" -k "$out/$name.img"
  (cd "$out" && sha256sum "$name.img" "$name.img.xz" >"$name.sha256")
  ls -l "$out/$name.img" "$out/$name.img.xz" | awk '{printf "compress: %s %d MiB\n", $9, $5 / 1048576}'
}

total=$SECONDS
if ((reuse_root)); then
  [[ -f $rootdir/usr/lib/outpost/dist/daemon/src/cli.js && -d $rootdir/usr/lib/outpost/node_modules ]] ||
    { echo "build.sh: --reuse-root: no finished root in $rootdir" >&2; exit 2; }
  echo "build.sh: --reuse-root: skipping compile and rootfs, using $rootdir"
else
  stage compile "npm run build (TypeScript → dist/)"
  stage rootfs "mmdebstrap bookworm $arch into $rootdir, Outpost installed by customize hooks"
fi
stage manifest "package versions → $out/$name.manifest"
stage bootfs "boot partition content: kernel, initrd$([[ $arch == arm64 ]] && echo ', Pi firmware, config.txt'), cmdline.txt"
stage disk "FAT + ext4 root + ext4 data, MBR, assembled with dd"
if ((compress)); then
  stage compress "xz -${OUTPOST_XZ_LEVEL:-6} and sha256"
else
  (cd "$out" && sha256sum "$name.img" >"$name.sha256")
  echo "build.sh: --no-compress: no .img.xz"
fi
current_stage=''
echo "build.sh: $name built in $((SECONDS - total)) s: $out/$name.img, $name.sha256, $name.manifest$( ((compress)) && echo ", $name.img.xz")"
rm -rf "$rootdir"
