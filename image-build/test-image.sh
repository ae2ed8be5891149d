#!/usr/bin/env bash
# `npm run test:image`: build the amd64 twin, provision it as a site's hub with a bundle put on its boot
# partition by mtools, boot it under qemu (TCG, no KVM) and check from the host that
#   1. first boot applied the bundle (its `installed` event) and wiped it (event, and gone from the FAT),
#   2. the daemon reached READY (systemd prints "Started Outpost…" for a Type=notify unit only then),
#   3. its retained status is online, read with mosquitto_sub over TLS with the site CA and a console
#      account, through a hostfwd of the hub's MQTT TLS port (8883) to 127.0.0.1 only.
# Every wait is bounded; on failure the serial log is printed. Root is needed for the build.
#
#   image-build/test-image.sh [--no-build]   (--no-build: reuse OUT/outpost-amd64.img from a build)
# Environment: OUTPOST_IMAGE_WORK (default /var/tmp/outpost-image, as build.sh), OUTPOST_IMAGE_OUT (default WORK/out),
# OUTPOST_BOOT_TIMEOUT seconds to READY (default 900), OUTPOST_IMAGE_READ_WRITE=1 to build and boot
# the image with --read-write-root (the default is a root remounted read-only after first boot).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${OUTPOST_IMAGE_WORK:-/var/tmp/outpost-image}
out=${OUTPOST_IMAGE_OUT:-$work/out}
boot_timeout=${OUTPOST_BOOT_TIMEOUT:-900}
build=1
[[ ${1:-} == --no-build ]] && build=0

test_dir=$work/test-amd64
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

for tool in qemu-system-x86_64 mcopy mdir mosquitto_sub; do
  command -v "$tool" >/dev/null || fail "$tool missing: run image-build/setup"
done

if ((build)); then
  step "building the amd64 image (image-build/build.sh)"
  build_started=$SECONDS
  ro_flag=()
  [[ ${OUTPOST_IMAGE_READ_WRITE:-0} == 1 ]] && ro_flag=(--read-write-root)
  "$here/build.sh" --arch amd64 --out "$out" --no-compress "${ro_flag[@]}"
  echo "test-image: build took $((SECONDS - build_started)) s"
fi
image=$out/outpost-amd64.img
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
fat="$disk@@1M"
mcopy -i "$fat" "$test_dir/outpost-bundle.json" ::/outpost-bundle.json
mdir -i "$fat" ::/ | grep -qi 'outpost-bundle' || fail "bundle not on the boot partition"

port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
step "booting under qemu-system-x86_64 (TCG), hub MQTT TLS forwarded to 127.0.0.1:$port"
# Direct kernel boot: the kernel and initrd are the ones in the image's boot partition (build.sh copies
# them beside the image). journald forwards to the serial console so the host can read events.
append="$(cat "$out/outpost-amd64.cmdline") systemd.journald.forward_to_console=1 systemd.show_status=1"
boot_started=$SECONDS
nice -n 10 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 1024 -nographic -no-reboot \
  -kernel "$out/outpost-amd64.vmlinuz" -initrd "$out/outpost-amd64.initrd.img" -append "$append" \
  -drive file="$disk",format=raw,if=virtio \
  -netdev user,id=net0,hostfwd=tcp:127.0.0.1:$port-:8883 -device virtio-net-pci,netdev=net0 \
  -monitor unix:"$test_dir/monitor.sock",server,nowait </dev/null >"$serial" 2>&1 &
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

wait_for '"event":"installed"' "$boot_timeout"
echo "test-image: first boot installed the bundle after $((SECONDS - boot_started)) s"
wait_for '"event":"wiped"' 120
echo "test-image: first boot wiped the bundle"
wait_for 'Started outpost.service' "$boot_timeout"
ready=$((SECONDS - boot_started))
echo "test-image: daemon READY $ready s after qemu started"
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

echo "test-image: PASSED in $((SECONDS - started)) s (boot to READY $ready s)"
