#!/usr/bin/env bash
# build.sh --from-raspios IMAGE: the same Outpost steps applied to a Raspberry Pi OS Lite (bookworm,
# arm64) image the user supplies, for boards that need the Raspberry Pi kernel's hardware encoder.
# No loop devices, no mounts of the image: partitions are cut out with dd, the root is unpacked with
# `debugfs -R rdump`, the FAT is read and written with mtools, and the image is put together again the
# way build.sh does it (mkfs.ext4 -d, sfdisk, dd). The chroot steps (apt, npm ci) run in a private
# mount namespace (unshare), so their /proc, /sys, /dev mounts vanish with the process.
#
# STATUS: a skeleton. It ran end to end once (commit 18e9464) with build.sh's own arm64 image standing
# in for Raspberry Pi OS (same shape: MBR, FAT p1, ext4 p2); its output was never booted; never run on
# a real Raspberry Pi OS image (none can be fetched on the build machine). Not re-run since the fdisk
# install and the data mkfs options were added. No read-only root yet. See image-build/README.md.
#
#   from-raspios.sh IMAGE --out DIR --work DIR
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
input=${1:?usage: from-raspios.sh IMAGE --out DIR --work DIR}
shift
out=$here/out work=/work/image-work
while (($# > 0)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    *) echo "from-raspios.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -f $input ]] || { echo "from-raspios: no image $input" >&2; exit 2; }
build=$work/build-raspios cache=$work/cache name=outpost-raspios-arm64
mkdir -p "$out" "$build"
out=$(cd "$out" && pwd)
current_stage=''
trap 'status=$?; ((status == 0)) || echo "from-raspios: stage \"$current_stage\" failed (exit $status); work folder kept: $build" >&2' EXIT
stage() {
  current_stage=$1; shift
  local started=$SECONDS
  echo "==> [$current_stage] $*"
  "stage_$current_stage"
  echo "<== [$current_stage] done in $((SECONDS - started)) s"
}

img=$build/input.img
# partition N's start and size in sectors, from sfdisk's dump of the input
part() { sfdisk --dump "$img" | awk -v n="$1" '$1 ~ ("img" n "$") { gsub(/[,=]/, " "); for (i = 1; i <= NF; i++) { if ($i == "start") s = $(i+1); if ($i == "size") z = $(i+1) } print s, z }'; }

stage_unpack() {
  case $input in
    *.xz) xz -dc "$input" >"$img" ;;
    *) cp --sparse=always "$input" "$img" ;;
  esac
  disk_id=$(sfdisk --dump "$img" | awk '/^label-id:/ {sub(/^0x/, "", $2); print $2}')
  read -r boot_start boot_size < <(part 1)
  read -r root_start root_size < <(part 2)
  echo "unpack: disk id $disk_id, boot at $boot_start+$boot_size, root at $root_start+$root_size"
  rm -rf "$build/root" "$build/bootfs" && mkdir -p "$build/root" "$build/bootfs"
  dd if="$img" of="$build/root.ext4" bs=512 skip="$root_start" count="$root_size" status=none
  # rdump of / writes the root's content straight into the folder, with modes and owners (checked);
  # extended attributes (file capabilities such as ping's cap_net_raw) are not carried over.
  debugfs -R "rdump / $build/root" "$build/root.ext4" 2>&1 | grep -v '^debugfs' || true
  [[ -f $build/root/etc/os-release ]] || { echo "unpack: partition 2 of $input is not a Linux root" >&2; return 1; }
  grep -q 'VERSION_CODENAME=bookworm' "$build/root/etc/os-release" ||
    echo "unpack: warning: not bookworm ($(grep PRETTY_NAME "$build/root/etc/os-release")): untested" >&2
  mcopy -s -p -n -i "$img@@$((boot_start * 512))" ::/ "$build/bootfs/"
  rm -f "$build/root.ext4"
  echo "$disk_id $boot_start $boot_size" >"$build/layout"
}

stage_outpost() {
  local disk_id
  read -r disk_id _ <"$build/layout"
  (cd "$repo" && npm run --silent build)
  "$here/stages/install-outpost.sh" "$build/root" --disk-id "$disk_id"
  # Raspberry Pi OS grows partition 2 to the card's end at first boot; partition 3 (data) is there.
  sed -i -E 's# ?init=/usr/lib/raspberrypi-sys-mods/firstboot##; s# ?init=/usr/lib/raspi-config/init_resize\.sh##' \
    "$build/bootfs/cmdline.txt"
  # npm ci inside the root, in a private mount namespace (Raspberry Pi OS's own archive is not
  # reachable from an offline build machine: only Debian's sources are used for the build deps).
  unshare --mount --fork /bin/bash -euo pipefail -c '
    root=$1
    mount --make-rprivate /
    mount -t proc proc "$root/proc"; mount --rbind /sys "$root/sys"; mount --rbind /dev "$root/dev"
    cp /etc/resolv.conf "$root/etc/resolv.conf.outpost" 2>/dev/null || true
    mkdir -p "$root/etc/apt/sources.list.d.off"
    mv "$root"/etc/apt/sources.list.d/*.list "$root/etc/apt/sources.list.d.off/" 2>/dev/null || true
    chroot "$root" apt-get update -q
    # sfdisk for outpost-grow-data (Raspberry Pi OS Lite is expected to have it already: unverified)
    chroot "$root" apt-get install -y -q --no-install-recommends fdisk
    "$2/stages/node-modules.sh" "$root" arm64 "$3"
    mv "$root"/etc/apt/sources.list.d.off/* "$root/etc/apt/sources.list.d/" 2>/dev/null || true
    rmdir "$root/etc/apt/sources.list.d.off"
    chroot "$root" apt-get clean
  ' _ "$build/root" "$here" "$cache"
  dpkg-query --admindir="$build/root/var/lib/dpkg" -W -f='${Package}\t${Version}\t${Architecture}\n' |
    sort >"$out/$name.manifest"
}

stage_disk() {
  local disk_id boot_start boot_size used_kib root_mib data_mib=128
  read -r disk_id boot_start boot_size <"$build/layout"
  dd if="$img" of="$build/boot.vfat" bs=512 skip="$boot_start" count="$boot_size" status=none
  mcopy -o -i "$build/boot.vfat" "$build/bootfs/cmdline.txt" ::/cmdline.txt
  used_kib=$(du -sk "$build/root" | cut -f1)
  root_mib=$(((used_kib * 13 / 10) / 1024 + 256))
  mkfs.ext4 -q -F -L rootfs -d "$build/root" "$build/root.ext4" "${root_mib}M"
  mkdir -p "$build/data-empty"
  mkfs.ext4 -q -F -L outpost-data -b 4096 -i 65536 -E resize=536870912 -d "$build/data-empty" "$build/data.ext4" "${data_mib}M"
  local root_start=$((boot_start + boot_size)) root_size=$((root_mib * 2048))
  local data_start=$((root_start + root_size)) data_size=$((data_mib * 2048))
  local target=$out/$name.img
  rm -f "$target" && truncate -s $(((data_start + data_size) * 512)) "$target"
  sfdisk --quiet "$target" <<SFDISK
label: dos
label-id: 0x$disk_id
unit: sectors
start=$boot_start, size=$boot_size, type=c
start=$root_start, size=$root_size, type=83
start=$data_start, size=$data_size, type=83
SFDISK
  dd if="$build/boot.vfat" of="$target" bs=512 seek="$boot_start" conv=notrunc,sparse status=none
  dd if="$build/root.ext4" of="$target" bs=512 seek="$root_start" conv=notrunc,sparse status=none
  dd if="$build/data.ext4" of="$target" bs=512 seek="$data_start" conv=notrunc,sparse status=none
  rm -f "$build"/*.vfat "$build"/*.ext4
}

stage_compress() {
  rm -f "$out/$name.img.xz"
  nice -n 10 xz -T2 -6 -k "$out/$name.img"
  (cd "$out" && sha256sum "$name.img" "$name.img.xz" >"$name.sha256")
}

total=$SECONDS
stage unpack "cut the partitions out of $input (dd), unpack the root (debugfs rdump), the FAT (mcopy)"
stage outpost "install Outpost into the root, npm ci inside it (qemu-user)"
stage disk "FAT (the input's, with our cmdline.txt) + new ext4 root + data partition, MBR, dd"
stage compress "xz and sha256"
current_stage=''
echo "from-raspios: $name built in $((SECONDS - total)) s: $out/$name.img{,.xz}"
rm -rf "$build"
