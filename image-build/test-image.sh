#!/usr/bin/env bash
# `npm run test:image`: build the amd64 twin, provision it as a site's hub with a bundle put on its boot
# partition by mtools, boot it under qemu (TCG, no KVM) through UEFI (OVMF) and the image's own
# systemd-boot, and check from the host that
#   0. systemd-boot started slot A (rauc.slot=A on the kernel command line),
#   1. first boot applied the bundle (its `installed` event) and wiped it (event, and gone from the FAT),
#   2. the daemon reached READY (systemd prints "Started Outpost…" for a Type=notify unit only then),
#   3. its retained status is online, read with mosquitto_sub over TLS with the site CA and a console
#      account, through a hostfwd of the hub's MQTT TLS port (8883) to 127.0.0.1 only,
#   4. the hub serves time (first boot wrote chrony's hub settings): an NTP query through a hostfwd of
#      UDP 123 is answered at stratum 10, synchronised,
#   5. the data partition grew to the end of the disk: the disk is 1 GiB larger than the image when it
#      boots, and after power-off partition 4 ends at the disk's end and its ext4 superblock (read from
#      the host) counts the grown size.
# Every wait is bounded; on failure the serial log is printed. Root is needed for the build.
#
#   image-build/test-image.sh [--no-build] [--arch amd64|arm64]
#   (--no-build: reuse OUT/outpost-ARCH.img from a build). --arch arm64 (opt-in: npm run test:image --
#   --arch arm64) builds the Raspberry Pi image and boots its root slot under qemu-system-aarch64 (virt
#   machine, TCG) with the slot's own Debian arm64 kernel and initrd (direct kernel boot: the Pi's
#   firmware does not run under qemu's virt machine); the checks are the same, but step 0 checks the
#   command line qemu gave, not a boot loader. OUTPOST_RASPI3B=1 then also tries `-M raspi3b` (report).
# `npm run test:image -- --arch arm64`: opt-in, not in .ci/run (image-build/README.md, "Figures").

# Environment: OUTPOST_IMAGE_WORK (default /var/tmp/outpost-image, as build.sh), OUTPOST_IMAGE_OUT (default WORK/out),
# OUTPOST_BOOT_TIMEOUT seconds to READY (default 900), OUTPOST_IMAGE_READ_WRITE=1 to build and boot
# the image with --read-write-root (the default is a root remounted read-only after first boot).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${OUTPOST_IMAGE_WORK:-/var/tmp/outpost-image}
out=${OUTPOST_IMAGE_OUT:-$work/out}
boot_timeout=${OUTPOST_BOOT_TIMEOUT:-900}
build=1 arch=amd64
while (($# > 0)); do
  case $1 in
    --no-build) build=0; shift ;;
    --arch) arch=${2:-}; shift 2 ;;
    *) echo "test-image.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $arch == amd64 || $arch == arm64 ]] || { echo "test-image.sh: --arch amd64 or arm64" >&2; exit 2; }

test_dir=$work/test-$arch
serial=$test_dir/serial.log
qemu_pid=''
started=$SECONDS
cleanup() {
  local status=$?
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid" 2>/dev/null || true; fi
  if ((status != 0)); then
    echo "test-image: FAILED (exit $status) after $((SECONDS - started)) s; serial log ($serial):" >&2
    [[ -f $serial ]] && tail -n 400 "$serial" >&2
  fi
}
trap cleanup EXIT
step() { echo "--- test-image [$((SECONDS - started)) s]: $*"; }
fail() { echo "test-image: $*" >&2; exit 1; }

qemu=$([[ $arch == amd64 ]] && echo qemu-system-x86_64 || echo qemu-system-aarch64)
for tool in "$qemu" mcopy mdir mosquitto_sub; do
  command -v "$tool" >/dev/null || fail "$tool missing: run image-build/setup"
done
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
[[ $arch == arm64 || (-f $ovmf_code && -f $ovmf_vars) ]] || fail "no OVMF firmware ($ovmf_code): run image-build/setup"


if ((build)); then
  step "building the $arch image (image-build/build.sh)"
  build_started=$SECONDS
  ro_flag=()
  [[ ${OUTPOST_IMAGE_READ_WRITE:-0} == 1 ]] && ro_flag=(--read-write-root)
  "$here/build.sh" --arch "$arch" --out "$out" --no-compress --serial-journal "${ro_flag[@]}"
  echo "test-image: build took $((SECONDS - build_started)) s"
fi
image=$out/outpost-$arch.img
[[ -f $image ]] || fail "no $image: run without --no-build"

step "provisioning a site with outpost-provision (hub + console account)"
rm -rf "$test_dir" && mkdir -p "$test_dir"
(cd "$repo" && npm run --silent build)
provision() { node "$repo/provisioning/bin/outpost-provision.js" "$@"; }
site=$test_dir/site
# The hub's certificate names 127.0.0.1, so mosquitto_sub checks it fully through the port forward.
provision site init "$site" --site imagetest --hub-host hub --hub-ip 127.0.0.1 --hub-cameras none >/dev/null
provision device add hub --role hub --cameras none -d "$site" >/dev/null
provision console add ops --password-file "$test_dir/ops.password" -d "$site" >/dev/null
provision bundle hub --out "$test_dir/outpost-bundle.json" -d "$site" >/dev/null

step "copying the image and putting the bundle on its boot partition (mtools, partition 1 at 1 MiB)"
disk=$test_dir/disk.img
cp --sparse=always "$image" "$disk"
# A card larger than the image: outpost-grow-data.service must grow partition 4 and its ext4 into it.
grow_mib=1024
truncate -s +${grow_mib}M "$disk"
read -r data_start data_size < <(sfdisk --dump "$disk" | awk '$1 ~ /img4$/ { gsub(/[,=]/, " "); for (i = 1; i <= NF; i++) { if ($i == "start") s = $(i+1); if ($i == "size") z = $(i+1) } print s, z }')
[[ -n $data_start && -n $data_size ]] || fail "no partition 4 in $image"
echo "test-image: data partition $((data_size / 2048)) MiB in the image; disk enlarged by $grow_mib MiB"
fat="$disk@@1M"
mcopy -i "$fat" "$test_dir/outpost-bundle.json" ::/outpost-bundle.json
mdir -i "$fat" ::/ | grep -qi 'outpost-bundle' || fail "bundle not on the boot partition"

port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
ntp_port=$(node -e 'const s = require("dgram").createSocket("udp4"); s.bind(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
if [[ $arch == amd64 ]]; then
  step "booting under qemu-system-x86_64 (TCG, UEFI), hub MQTT TLS forwarded to 127.0.0.1:$port, NTP to udp 127.0.0.1:$ntp_port"
  # UEFI: OVMF (with its own copy of the variable store) starts the image's systemd-boot, which starts the
  # newest committed slot (docs/updates.md). The image was built with --serial-journal: the journal is
  # forwarded to the serial console, where the host reads events.
  cp "$ovmf_vars" "$test_dir/ovmf-vars.fd"
  boot_started=$SECONDS
  nice -n 10 qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m 1024 -nographic -no-reboot \
    -drive if=pflash,format=raw,readonly=on,file="$ovmf_code" -drive if=pflash,format=raw,file="$test_dir/ovmf-vars.fd" \
    -drive file="$disk",format=raw,if=virtio \
    -netdev user,id=net0,hostfwd=tcp:127.0.0.1:$port-:8883,hostfwd=udp:127.0.0.1:$ntp_port-:123 \
    -device virtio-net-pci,netdev=net0 \
    -monitor unix:"$test_dir/monitor.sock",server,nowait </dev/null >"$serial" 2>&1 &
else
  step "booting slot A under qemu-system-aarch64 (virt, TCG) with its own kernel, MQTT TLS on 127.0.0.1:$port, NTP on udp $ntp_port"
  # The slot's own kernel and initrd (build.sh copies them beside the image); the command line is the
  # image's (root slot A by PARTUUID, rauc.slot=A) with the PL011 console of qemu's virt machine.
  append="root=PARTUUID=4f757470-02 rootfstype=ext4 rootflags=noatime,errors=remount-ro rootwait rw rauc.slot=A panic=10"
  append+=" console=ttyAMA0 systemd.journald.forward_to_console=1 systemd.show_status=1"
  boot_started=$SECONDS
  nice -n 10 qemu-system-aarch64 -machine virt -accel tcg,thread=multi -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
    -kernel "$out/outpost-arm64.vmlinuz" -initrd "$out/outpost-arm64.initrd.img" -append "$append" \
    -drive if=none,id=disk,file="$disk",format=raw -device virtio-blk-pci,drive=disk \
    -netdev user,id=net0,hostfwd=tcp:127.0.0.1:$port-:8883,hostfwd=udp:127.0.0.1:$ntp_port-:123 \
    -device virtio-net-pci,netdev=net0 \
    -monitor unix:"$test_dir/monitor.sock",server,nowait </dev/null >"$serial" 2>&1 &
fi
qemu_pid=$!

# wait_for PATTERN SECONDS: until the serial log has the pattern (fixed string), or fail.
wait_for() {
  local pattern=$1 limit=$2 deadline=$((SECONDS + $2))
  until grep -qF -- "$pattern" "$serial" 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited before \"$pattern\""
    ((SECONDS < deadline)) || fail "no \"$pattern\" on the serial console within $limit s"
    sleep 2
  done
}

wait_for 'rauc.slot=A' "$boot_timeout"
echo "test-image: slot A started after $((SECONDS - boot_started)) s ($([[ $arch == amd64 ]] && echo 'by systemd-boot' || echo 'qemu direct kernel boot'))"
wait_for '"event":"installed"' "$boot_timeout"
echo "test-image: first boot installed the bundle after $((SECONDS - boot_started)) s"
wait_for '"event":"wiped"' 120
echo "test-image: first boot wiped the bundle"
grep -F '"event":"time"' "$serial" | grep -qF '"serves":true' || fail "first boot did not write the hub's chrony settings"
echo "test-image: first boot wrote chrony's hub settings"
wait_for 'Started outpost.service' "$boot_timeout"
ready=$((SECONDS - boot_started))
echo "test-image: daemon READY $ready s after qemu started"
# outpost-grow-data.service is ordered before the daemon: its last line is there by now.
grown=$(grep -o '{"event":"data-size"[^}]*}' "$serial" | tail -n 1 || true)
[[ -n $grown ]] || fail "outpost-grow-data reported no data size before the daemon started"
echo "test-image: outpost-grow-data: $grown"
if [[ ${OUTPOST_IMAGE_READ_WRITE:-0} != 1 ]]; then
  grep -qF 'Finished outpost-read-only-root.service' "$serial" || fail "/ was not remounted read-only"
  echo "test-image: / remounted read-only before the daemon started"
fi

step "reading the hub's retained status over TLS (site CA, console account ops)"
status_payload=''
deadline=$((SECONDS + 120))
while ((SECONDS < deadline)); do
  status_payload=$(timeout 30 mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$site/ca/ca.crt" \
    -u ops -P "$(cat "$test_dir/ops.password")" -i image-test -t 'outpost/v1/imagetest/hub/status' \
    -C 1 -W 20 2>&1) && break
  echo "test-image: not yet: $status_payload"
  sleep 3
done
echo "test-image: status = $status_payload"
grep -q '"online"' <<<"$status_payload" || fail "the hub's retained status is not online: $status_payload"

step "asking the hub for the time (NTP client packet to udp 127.0.0.1:$ntp_port)"
# An NTP v4 client request (48 bytes, mode 3); the answer's stratum is byte 1, its leap indicator the
# top two bits of byte 0 (3: not synchronised). Bounded: 3 s per try, 90 s in all.
ntp_answer=''
deadline=$((SECONDS + 90))
while ((SECONDS < deadline)); do
  ntp_answer=$(timeout 10 node -e '
    const socket = require("dgram").createSocket("udp4");
    const request = Buffer.alloc(48); request[0] = 0x23;
    setTimeout(() => { console.log("no answer"); process.exit(1); }, 3000);
    socket.on("message", (m) => { console.log(`stratum ${m[1]} leap ${m[0] >> 6}`); process.exit(0); });
    socket.send(request, Number(process.argv[1]), "127.0.0.1");
  ' "$ntp_port" 2>&1) || true
  [[ $ntp_answer =~ ^stratum\ 10\ leap\ [012]$ ]] && break
  sleep 3
done
echo "test-image: NTP answer from the hub: $ntp_answer"
[[ $ntp_answer =~ ^stratum\ 10\ leap\ [012]$ ]] || fail "the hub does not serve time at stratum 10: $ntp_answer"

step "shutting the box down (ACPI power button) to read its boot partition back"
printf 'system_powerdown\n' | timeout 5 node -e '
  const s = require("net").connect(process.argv[1]); process.stdin.pipe(s); setTimeout(() => process.exit(0), 2000);
' "$test_dir/monitor.sock" >/dev/null || true
deadline=$((SECONDS + 180))
while kill -0 "$qemu_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 2; done
if kill -0 "$qemu_pid" 2>/dev/null; then
  echo "test-image: no clean power-off within 180 s; stopping qemu" >&2
  kill "$qemu_pid"
fi
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=''
if mdir -i "$fat" ::/ | grep -qi 'outpost-bundle'; then fail "the bundle is still on the boot partition"; fi
echo "test-image: the bundle is gone from the boot partition"

step "reading the grown data partition back from the disk (sfdisk, ext4 superblock)"
disk_sectors=$(($(stat -c %s "$disk") / 512))
read -r new_start new_size < <(sfdisk --dump "$disk" | awk '$1 ~ /img4$/ { gsub(/[,=]/, " "); for (i = 1; i <= NF; i++) { if ($i == "start") s = $(i+1); if ($i == "size") z = $(i+1) } print s, z }')
((new_start == data_start)) || fail "partition 4 moved: start $new_start, was $data_start"
((new_start + new_size >= disk_sectors - 2048)) ||
  fail "partition 4 ends at sector $((new_start + new_size)), not at the disk's end ($disk_sectors): not grown"
# ext4 superblock at 1024 bytes into the partition: s_blocks_count_lo at +4, s_log_block_size at +24.
sb=$((new_start * 512 + 1024))
blocks=$(od -An -tu4 -j $((sb + 4)) -N 4 "$disk" | tr -d ' ')
block_size=$((1024 << $(od -An -tu4 -j $((sb + 24)) -N 4 "$disk" | tr -d ' ')))
fs_mib=$((blocks * block_size / 1048576))
echo "test-image: data partition $((data_size / 2048)) MiB -> $((new_size / 2048)) MiB, ext4 $fs_mib MiB"
((fs_mib >= data_size / 2048 + grow_mib - 4)) || fail "the data filesystem is $fs_mib MiB: not grown to the partition"

echo "test-image: PASSED in $((SECONDS - started)) s (boot to READY $ready s)"
