#!/usr/bin/env bash
# Builds Outpost's SD-card image from Debian 12 packages, without loop mounts (image-build/README.md).
#
#   image-build/build.sh --arch arm64|amd64 [--out DIR] [--work DIR] [--read-write-root]
#                        [--no-compress] [--bundle] [--version V] [--update-key DIR] [--reuse-root]
#                        [--keep-root] [--serial-journal] [--health-window S] [--from-raspios IMAGE]
#                        [--list-stages]
#
# Stages (each prints what it does and how long it took; a failure names the stage and keeps the work
# folder): compile → rootfs (mmdebstrap + outpost-files + node-modules hooks) → manifest → bootfs →
# slot → disk → bundle → compress. Output in --out (default image-build/out): outpost-ARCH.img, .img.xz,
# .sha256, .manifest (package versions), the slot's kernel and initrd (.vmlinuz, .initrd.img), and with
# --bundle the signed update bundle outpost-ARCH-VERSION.raucb (docs/updates.md).
# Layout: boot partition, root slots A and B, data (README.md, "Layout"); the image boots slot A.
# The root is remounted read-only after first boot unless --read-write-root (README.md, "Read-only root").
# --update-key DIR: the update-signing key and keyring (image-build/update-key.sh); the keyring goes
# into the image, the key signs the bundle and never enters the image. Default: a development key made
# once in WORK/update-key (printed as such: not for boxes in the field).
# --serial-journal: every slot's kernel command line also forwards the journal to the serial console (the
# tests read events there; a box in the field keeps its journal to itself). --health-window S: the
# update health gate waits S seconds instead of the config's (update.healthWindowSeconds, default 180)
# for a new slot's daemon, and the deadline unit S + 240: for emulation, where a boot is ten times slower.
# Re-runs reuse the package caches in WORK/cache (apt .debs, the Node tarball, npm's cache).
# --from-raspios IMAGE hands over to stages/from-raspios.sh, a skeleton: run once on a stand-in image,
# never on a real Raspberry Pi OS image, never booted (README.md, "--from-raspios IMAGE").
# --reuse-root skips rootfs and carries on from the root folder an earlier run left in
# WORK/build-ARCH/root (--keep-root, or a failure in a later stage), with Outpost's own files installed
# again (compile + stages/install-outpost.sh): quick rebuilds while changing Outpost, amd64 only (the
# arm64 boot partition's firmware is moved out of the root by the first run).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

STAGES=(compile rootfs manifest bootfs slot disk bundle compress)
arch='' out=$here/out work=${OUTPOST_IMAGE_WORK:-/var/tmp/outpost-image} read_only=1 raspios='' compress=1 reuse_root=0
bundle=0 version='' update_key='' keep_root=0 serial_journal=0 health_window=''
usage() { sed -n '4,7p' "$0" | sed 's/^# *//' >&2; exit 2; }
while (($# > 0)); do
  case $1 in
    --arch) arch=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --work) work=${2:-}; shift 2 ;;
    --read-only-root) read_only=1; shift ;; # the default; kept for scripts that name it
    --read-write-root) read_only=0; shift ;;
    --no-compress) compress=0; shift ;;
    --reuse-root) reuse_root=1; shift ;;
    --keep-root) keep_root=1; shift ;;
    --serial-journal) serial_journal=1; shift ;;
    --health-window) health_window=${2:-}; shift 2 ;;
    --bundle) bundle=1; shift ;;
    --version) version=${2:-}; shift 2 ;;
    --update-key) update_key=${2:-}; shift 2 ;;
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
version=${version:-$(node -p 'require(process.argv[1]).version' "$repo/package.json")}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || { echo "build.sh: --version $version is not MAJOR.MINOR.PATCH[-pre]" >&2; exit 2; }
# The compatible string a bundle must carry to be installed (docs/updates.md): arch and boot method.
boot_method=$([[ $arch == amd64 ]] && echo efi || echo rpi)
compatible=outpost-$arch-$boot_method
if [[ -z $update_key ]]; then
  update_key=$work/update-key
  if [[ ! -f $update_key/keyring.pem ]]; then
    "$here/update-key.sh" "$update_key" --name "Outpost development update key ($(hostname))" >/dev/null
  fi
  echo "build.sh: signing with the DEVELOPMENT update key in $update_key (for tests; pass --update-key DIR for boxes in the field)"
fi
for file in keyring.pem signing.crt; do
  [[ -f $update_key/$file ]] || { echo "build.sh: no $update_key/$file: make the key with image-build/update-key.sh DIR" >&2; exit 2; }
done
update_key=$(cd "$update_key" && pwd)
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
  # updates (docs/updates.md): RAUC and its D-Bus service; unsquashfs for `rauc info` on a bundle
  rauc rauc-service squashfs-tools
  # sfdisk: outpost-grow-data grows the data partition to the card at boot (resize2fs: e2fsprogs)
  fdisk
  initramfs-tools
  # GStreamer runtime and the plugins the daemon's pipelines use (videotestsrc, x264enc, rtp, srtp, mp4mux)
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  # field checks, time
  mosquitto-clients chrony
)
# amd64 twin: systemd-boot (the EFI binary only) boots the slots from the boot partition (the ESP).
packages_amd64=(linux-image-amd64 systemd-boot-efi)
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
  ((serial_journal)) && ro_flag+=(--serial-journal)
  [[ -n $health_window ]] && ro_flag+=(--health-window "$health_window")
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
    --customize-hook="$here/stages/install-outpost.sh \"\$1\" --disk-id $disk_id ${ro_flag[*]} --arch $arch --boot $boot_method --version $version --keyring $update_key/keyring.pem" \
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

# --- bootfs: the boot partition's content, moved out of the root (mounted at /boot/firmware on the box).
# The slot files (kernel, initrd, and on a Pi the DTBs and cmdline.txt) go into slot-a/ through the same
# backend that installs a bundle's kernel on the box (files/outpost-boot install-kernel), so the build
# and an update write one layout.
boot_tool() { OUTPOST_BOOT_CONF=$build/boot.conf "$here/files/outpost-boot" "$@"; }
stage_bootfs() {
  local bootfs=$build/bootfs kernel initrd
  rm -rf "$bootfs" && mkdir -p "$bootfs"
  kernel=$(find "$rootdir/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)
  initrd=$(find "$rootdir/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -1)
  [[ -n $kernel && -n $initrd ]] || { echo "bootfs: no kernel or initrd in $rootdir/boot" >&2; return 1; }
  # The box's own backend config (install-outpost.sh wrote it), pointed at the folder being built.
  sed "s|^ESP=.*|ESP=$bootfs|" "$rootdir/usr/lib/outpost/update/boot.conf" >"$build/boot.conf"
  if [[ $arch == arm64 ]]; then
    # raspi-firmware's hooks filled /boot/firmware: the Pi's firmware (kept at the top), DTBs, kernel,
    # initrd, config.txt and cmdline.txt (replaced: each slot folder has its own, chosen by os_prefix).
    for file in config.txt start4.elf bootcode.bin; do
      [[ -f $rootdir/boot/firmware/$file ]] || { echo "bootfs: raspi-firmware left no $file in /boot/firmware" >&2; return 1; }
    done
    find "$rootdir/boot/firmware" -maxdepth 1 -type f \( -name 'bootcode.bin' -o -name 'start*.elf' -o -name 'fixup*.dat' \
      -o -name 'LICENCE*' \) -exec cp {} "$bootfs/" \;
    # The firmware loads os_prefix + these names; the rest of Debian's config.txt (arm_64bit, the UART,
    # upstream_kernel) is kept as it is.
    grep -v -E '^(kernel|initramfs|os_prefix)[ =]' "$rootdir/boot/firmware/config.txt" >"$bootfs/config.txt"
    printf '\n# Outpost: each slot folder holds vmlinuz, initrd.img, the DTBs and cmdline.txt\nkernel=vmlinuz\ninitramfs initrd.img followkernel\n' >>"$bootfs/config.txt"
    echo "bootfs: Debian's cmdline.txt was: $(cat "$rootdir/boot/firmware/cmdline.txt")"
  else
    # amd64 twin: systemd-boot as the removable-media loader (no EFI variables needed to find it).
    install -D -m 0644 "$rootdir/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$bootfs/EFI/BOOT/BOOTX64.EFI"
    # No `default`: systemd-boot starts the first entry in its order (outpost-boot, "efi"); no menu.
    install -d "$bootfs/loader/entries"
    printf 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\n' >"$bootfs/loader/loader.conf"
  fi
  boot_tool install-kernel A "$rootdir"
  boot_tool init A
  boot_tool show | sed 's/^/bootfs: /'
  cp "$kernel" "$out/$name.vmlinuz"
  cp "$initrd" "$out/$name.initrd.img"
  cat >"$bootfs/README-outpost.txt" <<'TXT'
Outpost boot partition. To provision this box, put its bundle here as outpost-bundle.json
(outpost-provision bundle NAME --out /path/to/this/partition/outpost-bundle.json); it is applied and
wiped at first boot. Optionally pin the site CA with outpost-ca.sha256 (docs/provisioning.md).
slot-a/ and slot-b/ hold each root slot's kernel; do not edit them or the boot entries by hand
(docs/updates.md).
TXT
  rm -rf "${rootdir:?}/boot/firmware" && install -d -m 0755 "$rootdir/boot/firmware"
  du -sh "$bootfs" | sed 's/^/bootfs: /'
}

# --- slot: the root filesystem as an ext4 image of its content (+10% and 64 MiB): what a bundle carries
# and RAUC writes into the idle slot (then grows to the partition: system.conf resize=true).
stage_slot() {
  local used_kib slot_img_mib
  used_kib=$(du -sk --exclude=./proc --exclude=./sys "$rootdir" | cut -f1)
  slot_img_mib=$(((used_kib * 11 / 10) / 1024 + 64))
  rm -f "$build/root.ext4"
  mkfs.ext4 -q -F -L rootfs -O ^metadata_csum_seed -E lazy_itable_init=0 -d "$rootdir" "$build/root.ext4" "${slot_img_mib}M"
  echo "slot: root.ext4 ${slot_img_mib} MiB for ${used_kib} KiB of files"
  echo "$used_kib" >"$build/root.used-kib"
}

# --- disk: FAT (mkfs.vfat on a file + mcopy), root slots A and B, data (mkfs.ext4 -d), MBR by sfdisk,
# assembled with dd conv=notrunc. No loop device, no mount. Slot A is the root image grown to the slot
# (resize2fs on the file); slot B is left empty until the first update writes it.
boot_mib=512 data_mib=128
stage_disk() {
  local img=$build/$name.img slot_mib used_kib
  rm -f "$build"/*.vfat "$build/slot-a.ext4" "$build/data.ext4" "$img"
  truncate -s "${boot_mib}M" "$build/boot.vfat"
  mkfs.vfat -F 32 -n BOOTFS -i "$disk_id" "$build/boot.vfat" >/dev/null
  mcopy -s -p -i "$build/boot.vfat" "$build/bootfs"/* ::/
  used_kib=$(cat "$build/root.used-kib")
  # Each slot: the content + 30% + 256 MiB, at least 2 GiB, in 64 MiB steps: room for later releases.
  slot_mib=$(((used_kib * 13 / 10) / 1024 + 256))
  ((slot_mib >= 2048)) || slot_mib=2048
  slot_mib=$(((slot_mib + 63) / 64 * 64))
  cp --sparse=always "$build/root.ext4" "$build/slot-a.ext4"
  truncate -s "${slot_mib}M" "$build/slot-a.ext4"
  resize2fs -f "$build/slot-a.ext4" >/dev/null 2>&1
  # The data partition's first content: the daemon's data dir (bind-mounted on /var/lib/outpost), the
  # box's configuration (/etc/outpost links to etc/outpost), and the updater's state (docs/updates.md).
  local data_init=$build/data-init
  rm -rf "$data_init" && install -d -m 0755 "$data_init/outpost" "$data_init/etc" "$data_init/update"
  # 4 KiB blocks and an inode per 64 KiB (clips, LevelDB tables, bundles: few, large files), not mke2fs's
  # "small" type (1 KiB blocks, an inode per 4 KiB) that a 128 MiB filesystem would get and keep when
  # it grows to the card at boot; GDT reserved for online growth up to 2 TiB (MBR's limit).
  mkfs.ext4 -q -F -L outpost-data -b 4096 -i 65536 -E resize=536870912 -d "$data_init" "$build/data.ext4" "${data_mib}M"
  local boot_start=2048 boot_size=$((boot_mib * 2048)) slot_size=$((slot_mib * 2048))
  local a_start=$((boot_start + boot_size))
  local b_start=$((a_start + slot_size))
  local data_start=$((b_start + slot_size)) data_size=$((data_mib * 2048))
  truncate -s $(((data_start + data_size) * 512)) "$img"
  sfdisk --quiet "$img" <<SFDISK
label: dos
label-id: 0x$disk_id
unit: sectors
start=$boot_start, size=$boot_size, type=$([[ $arch == amd64 ]] && echo ef || echo c), bootable
start=$a_start, size=$slot_size, type=83
start=$b_start, size=$slot_size, type=83
start=$data_start, size=$data_size, type=83
SFDISK
  dd if="$build/boot.vfat" of="$img" bs=512 seek=$boot_start conv=notrunc,sparse status=none
  dd if="$build/slot-a.ext4" of="$img" bs=512 seek=$a_start conv=notrunc,sparse status=none
  dd if="$build/data.ext4" of="$img" bs=512 seek=$data_start conv=notrunc,sparse status=none
  rm -f "$build"/*.vfat "$build/slot-a.ext4" "$build/data.ext4"
  mv "$img" "$out/$name.img"
  sfdisk --dump "$out/$name.img" | sed 's/^/disk: /'
  echo "disk: $out/$name.img $(du -h --apparent-size "$out/$name.img" | cut -f1) (slots A and B ${slot_mib} MiB each, ${used_kib} KiB used)"
}

# --- bundle: the signed update bundle (RAUC, 'plain' format: the signature covers the whole file, so it
# is checked in full before anything is written). Its hook (files/bundle-hook) puts the new slot's
# kernel on the boot partition and carries the box's own files (machine id, hostname, time role) over.
stage_bundle() {
  "$here/make-bundle.sh" --root-image "$build/root.ext4" --version "$version" --compatible "$compatible" \
    --update-key "$update_key" --out "$out/$name-$version.raucb"
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
  echo "build.sh: --reuse-root: skipping rootfs, using $rootdir; Outpost's own files installed again"
  stage compile "npm run build (TypeScript → dist/)"
  stage_outpost_files() {
    local flags=(--disk-id "$disk_id" --arch "$arch" --boot "$boot_method" --version "$version" --keyring "$update_key/keyring.pem")
    ((read_only)) && flags+=(--read-only-root)
    ((serial_journal)) && flags+=(--serial-journal)
    [[ -n $health_window ]] && flags+=(--health-window "$health_window")
    "$here/stages/install-outpost.sh" "$rootdir" "${flags[@]}"
  }
  stage outpost_files "Outpost $version into the kept root (stages/install-outpost.sh)"
else
  stage compile "npm run build (TypeScript → dist/)"
  stage rootfs "mmdebstrap bookworm $arch into $rootdir, Outpost $version installed by customize hooks"
fi
stage manifest "package versions → $out/$name.manifest"
stage bootfs "boot partition: $([[ $arch == arm64 ]] && echo 'Pi firmware, config.txt' || echo 'systemd-boot, loader entries'), slot A's kernel and initrd"
stage slot "root filesystem image (the bundle's payload)"
stage disk "FAT boot + ext4 slot A + empty slot B + ext4 data, MBR, assembled with dd"
if ((bundle)); then
  stage bundle "signed update bundle $name-$version.raucb ($compatible)"
fi
if ((compress)); then
  stage compress "xz -${OUTPOST_XZ_LEVEL:-6} and sha256"
else
  (cd "$out" && sha256sum "$name.img" >"$name.sha256")
  echo "build.sh: --no-compress: no .img.xz"
fi
current_stage=''
echo "build.sh: $name $version built in $((SECONDS - total)) s: $out/$name.img, $name.sha256, $name.manifest$( ((compress)) && echo ", $name.img.xz")$( ((bundle)) && echo ", $name-$version.raucb")"
# --keep-root keeps the root folder and its image (test-update.sh makes its v2 and v3 bundles from it).
((keep_root)) || rm -rf "$rootdir" "$build/root.ext4"
