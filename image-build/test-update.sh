#!/usr/bin/env bash
# `npm run test:update`: updates on the amd64 twin under qemu (TCG, UEFI: OVMF + systemd-boot), from the
# host, as docs/updates.md describes them (each step's wait bounded; the serial log printed on failure):
#   0. build v1 (1.0.0) with its root image kept; v2 (2.0.0) and v3 (3.0.0, whose daemon cannot start)
#      are that root with their version (and v3's broken daemon) written in by debugfs, bundled and
#      signed with the build's update key; a tampered bundle (one byte of v4 changed);
#   1. boot v1 provisioned as a site's hub; READY, status online;
#   2. `outpost update push v2 --device hub` over the LAN (TLS, console account): received, installed
#      into slot B, rebooted on trial, committed; `status` says 2.0.0;
#   3. push v3, cut short once and run again (it resumes): installed into slot A, its daemon fails, the
#      box goes back to slot B by itself and reports `rolled-back` with the reason; `status` 2.0.0;
#   4. the tampered bundle on a USB stick (plugged in through qemu's monitor): refused, code
#      UPDATE_SIGNATURE_INVALID, and slot A's bytes on the disk unchanged;
#   5. a power cut (qemu killed) while RAUC writes v4 into slot A: the box boots slot B (2.0.0), and
#      reports the install as failed (cut short);
#   6. a power cut during v4's first boot, before it commits: the box boots slot B (2.0.0) again and
#      reports the rollback.
# Figures (bundle size, push, install, reboot → committed, bad update → back on the old slot) are
# printed as they are measured and in one line at the end.
#
#   image-build/test-update.sh [--no-build] [--from N]
#   (--no-build: reuse WORK/update-test/out from a build; --from N: go on from step N with the bundles
#   and the disk of the last run, booted as it was left: for working on the later steps)
# Environment: OUTPOST_IMAGE_WORK (default /var/tmp/outpost-image), OUTPOST_BOOT_TIMEOUT (default 900).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${OUTPOST_IMAGE_WORK:-/var/tmp/outpost-image}
boot_timeout=${OUTPOST_BOOT_TIMEOUT:-900}
build=1 from=1
while (($# > 0)); do
  case $1 in
    --no-build) build=0; shift ;;
    --from) from=${2:-1}; build=0; shift 2 ;;
    *) echo "test-update.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
test_name=test-update
test_dir=$work/update-test/run
out=$work/update-test/out
serial=$test_dir/serial.log
started=$SECONDS
# shellcheck source=test-lib.sh
. "$here/test-lib.sh"
cleanup() {
  local status=$?
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid" 2>/dev/null || true; fi
  if ((status != 0)); then
    echo "test-update: FAILED (exit $status) after $((SECONDS - started)) s" >&2
    print_serial
  fi
}
trap cleanup EXIT

for tool in qemu-system-x86_64 mcopy mdir mkfs.vfat mosquitto_sub debugfs rauc sfdisk; do
  command -v "$tool" >/dev/null || fail "$tool missing: run image-build/setup"
done
[[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ]] || fail "no OVMF: run image-build/setup"

root_image=$work/build-amd64/root.ext4
key=$work/update-key
if ((build)); then
  step "building v1 (1.0.0), root image kept for v2 and v3"
  build_started=$SECONDS
  # --health-window 900: under TCG on a loaded machine a boot to READY took up to 10 minutes.
  "$here/build.sh" --arch amd64 --out "$out" --no-compress --serial-journal --health-window 900 --keep-root --bundle \
    --version 1.0.0
  echo "test-update: build took $((SECONDS - build_started)) s"
fi
image=$out/outpost-amd64.img
[[ -f $image && -f $root_image ]] || fail "no $image or $root_image: run without --no-build"
(cd "$repo" && npm run --silent build)
if ((from == 1)); then rm -rf "$test_dir"; fi
mkdir -p "$test_dir"

# variant NAME VERSION [BROKEN]: the root image with VERSION in package.json and release (and, BROKEN, a
# daemon that cannot start), written in place by debugfs (no mount), then bundled and signed.
variant() {
  local name=$1 version=$2 broken=${3:-0} img=$test_dir/$1.ext4 files=$test_dir/$1-files
  mkdir -p "$files"
  cp --sparse=always "$root_image" "$img"
  debugfs -R 'cat /usr/lib/outpost/package.json' "$img" 2>/dev/null |
    sed "s/^  \"version\": \".*\",\$/  \"version\": \"$version\",/" >"$files/package.json"
  debugfs -R 'cat /usr/lib/outpost/release' "$img" 2>/dev/null | sed "s/^VERSION=.*/VERSION=$version/" >"$files/release"
  grep -q "\"version\": \"$version\"" "$files/package.json" || fail "could not set the version in $name's package.json"
  {
    echo "rm /usr/lib/outpost/package.json"
    echo "write $files/package.json /usr/lib/outpost/package.json"
    echo "sif /usr/lib/outpost/package.json mode 0100644"
    echo "rm /usr/lib/outpost/release"
    echo "write $files/release /usr/lib/outpost/release"
    echo "sif /usr/lib/outpost/release mode 0100644"
  } >"$files/debugfs.cmds"
  if ((broken)); then
    # The daemon of this release exits at once (ExitCode.START_FAILED): systemd restarts it until its
    # start limit, then the unit fails. The updater's own code (cli.js update gate) is intact.
    cat >"$files/main.js" <<'JS'
export async function runDaemon() {
  console.error('outpost: this test build (v3) cannot start');
  return 3;
}
JS
    {
      echo "rm /usr/lib/outpost/dist/daemon/src/main.js"
      echo "write $files/main.js /usr/lib/outpost/dist/daemon/src/main.js"
      echo "sif /usr/lib/outpost/dist/daemon/src/main.js mode 0100644"
    } >>"$files/debugfs.cmds"
  fi
  debugfs -w -f "$files/debugfs.cmds" "$img" >/dev/null 2>&1
  [[ $(debugfs -R 'cat /usr/lib/outpost/release' "$img" 2>/dev/null) == *"VERSION=$version"* ]] || fail "debugfs did not write $name"
  "$here/make-bundle.sh" --root-image "$img" --version "$version" --compatible outpost-amd64-efi \
    --update-key "$key" --out "$test_dir/$name.raucb"
  rm -f "$img"
}
if ((from == 1)); then
step "making bundles v2 (2.0.0), v3 (3.0.0, its daemon cannot start), v4 (4.0.0) and a tampered v4"
variant v2 2.0.0
variant v3 3.0.0 1
variant v4 4.0.0
cp "$test_dir/v4.raucb" "$test_dir/v4-tampered.raucb"
printf 'X' | dd of="$test_dir/v4-tampered.raucb" bs=1 seek=$((64 * 1048576)) conv=notrunc status=none
bundle_mib=$(($(stat -c %s "$test_dir/v2.raucb") / 1048576))
echo "test-update: bundle size $bundle_mib MiB (v2, zstd level ${OUTPOST_BUNDLE_ZSTD_LEVEL:-3})"

step "provisioning a hub and preparing its disk (4 GiB more: room for received bundles)"
provision_hub updatetest
disk=$test_dir/disk.img
cp --sparse=always "$image" "$disk"
truncate -s +4G "$disk"
mcopy -i "$disk@@1M" "$test_dir/outpost-bundle.json" ::/outpost-bundle.json
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$test_dir/vars.fd"
fi
site=$test_dir/site
disk=$test_dir/disk.img
bundle_mib=$(($(stat -c %s "$test_dir/v2.raucb") / 1048576))
port=$(free_tcp_port)
topic_status=outpost/v1/updatetest/hub/status
topic_update=outpost/v1/updatetest/hub/update
# The push command as one node process (not a shell function: `kill $!` must stop node itself).
push_cmd=(node "$repo/dist/daemon/src/cli.js" update push --device hub --url "mqtts://127.0.0.1:$port"
  --ca "$site/ca/ca.crt" --username ops --password-file "$test_dir/ops.password" --site updatetest)
push() { "${push_cmd[@]}" "$@"; }
# slot_sha SLOT: sha256 of a root slot's bytes in the disk image (A = partition 2, B = 3).
slot_sha() {
  local line
  line=$(sfdisk --dump "$disk" | awk -v p="disk.img$([[ $1 == A ]] && echo 2 || echo 3)" '$1 ~ p"$" { gsub(/[,=]/, " "); for (i = 1; i <= NF; i++) { if ($i == "start") s = $(i+1); if ($i == "size") z = $(i+1) } print s, z }')
  read -r start size <<<"$line"
  dd if="$disk" bs=1M skip=$((start / 2048)) count=$((size / 2048)) status=none | sha256sum | cut -d' ' -f1
}

# push_v4 LOG: push v4 without waiting for the box's result (the power cut comes first); LOG.log keeps
# what the tool said.
push_v4() {
  push "$test_dir/v4.raucb" --no-wait >"$test_dir/$1.log" 2>&1 || { cat "$test_dir/$1.log" >&2; fail "push of v4 failed"; }
}

# cut_power_and_expect_slot_b WHEN EVENT STATE REASON: a power cut (qemu killed), then the box boots
# slot B (2.0.0) again by itself, logs EVENT, and reports STATE with REASON on its update topic.
cut_power_and_expect_slot_b() {
  local when=$1 event=$2 state=$3 reason=$4 mark_cut
  power_cut
  echo "test-update: power cut $when"
  mark_cut=$(mark)
  start_qemu "$disk" "$test_dir/vars.fd"
  wait_for "$mark_cut" 'rauc.slot=B' "$boot_timeout" >/dev/null
  wait_for "$mark_cut" "\"event\":\"$event\"" "$boot_timeout" >/dev/null
  wait_for "$mark_cut" 'Started outpost.service' "$boot_timeout" >/dev/null
  wait_retained "$topic_update" 300 "\"state\":\"$state\"" '"running":\{"version":"2\.0\.0","slot":"B"\}' "$reason" >/dev/null
  wait_retained "$topic_status" 300 '"state":"online"' '"version":"2\.0\.0"' >/dev/null
}

if ((from <= 1)); then
step "1. booting v1 (slot A) under OVMF"
boot_started=$SECONDS
start_qemu "$disk" "$test_dir/vars.fd"
wait_for 0 'rauc.slot=A' "$boot_timeout" >/dev/null
wait_for 0 'Started outpost.service' "$boot_timeout" >/dev/null
echo "test-update: v1 READY $((SECONDS - boot_started)) s after qemu started"
wait_retained "$topic_status" 300 '"state":"online"' '"version":"1\.0\.0"' >/dev/null
echo "test-update: status online, 1.0.0"

fi
if ((from > 1)); then
  step "booting the disk as the last run left it, to go on from step $from"
  mark_from=$(mark)
  start_qemu "$disk" "$test_dir/vars.fd"
  wait_for "$mark_from" 'Started outpost.service' "$boot_timeout" >/dev/null
fi
if ((from <= 2)); then
step "2. pushing v2 over the LAN; the box installs it into slot B, reboots on trial, commits"
mark_v2=$(mark)
push_started=$SECONDS
"${push_cmd[@]}" "$test_dir/v2.raucb" >"$test_dir/push-v2.log" 2>&1 &
push_pid=$!
line=$(wait_for "$mark_v2" '"event":"update-received"' 1800)
push_s=$((SECONDS - push_started))
echo "test-update: v2 received and checked by the box after $push_s s"
wait_for "$mark_v2" '"event":"update-installing"' 300 >/dev/null
install_started=$SECONDS
wait_for "$mark_v2" '"event":"update-installed"' 1800 >/dev/null
install_s=$((SECONDS - install_started))
echo "test-update: v2 checked and installed into slot B in $install_s s"
reboot_started=$SECONDS
wait_for "$mark_v2" 'rauc.slot=B' "$boot_timeout" >/dev/null
wait_for "$mark_v2" '"event":"update-committed"' "$boot_timeout" >/dev/null
commit_s=$((SECONDS - reboot_started))
echo "test-update: reboot → slot B committed in $commit_s s"
timeout 600 tail --pid="$push_pid" -f /dev/null || fail "push of v2 did not end"
wait "$push_pid" || { cat "$test_dir/push-v2.log" >&2; fail "push of v2 failed"; }
grep -q 'hub: committed (running 2.0.0)' "$test_dir/push-v2.log" || { cat "$test_dir/push-v2.log" >&2; fail "push did not report the commit"; }
wait_retained "$topic_status" 300 '"state":"online"' '"version":"2\.0\.0"' >/dev/null
wait_retained "$topic_update" 120 '"state":"committed"' '"running":\{"version":"2\.0\.0","slot":"B"\}' >/dev/null
echo "test-update: status says 2.0.0; update says committed, slot B"

fi
if ((from <= 3)); then
step "3. pushing v3 (its daemon cannot start), cut short once, then resumed"
mark_v3=$(mark)
"${push_cmd[@]}" "$test_dir/v3.raucb" >"$test_dir/push-v3-cut.log" 2>&1 &
push_pid=$!
deadline=$((SECONDS + 600))
until tail -n +"$((mark_v3 + 1))" "$serial" | grep -q '"event":"update-receiving"'; do
  ((SECONDS < deadline)) || fail "v3 transfer did not start"
  sleep 1
done
sleep 20
kill "$push_pid" 2>/dev/null || true
wait "$push_pid" 2>/dev/null || true
"${push_cmd[@]}" "$test_dir/v3.raucb" >"$test_dir/push-v3.log" 2>&1 &
push_pid=$!
deadline=$((SECONDS + 120))
until grep -q 'resuming' "$test_dir/push-v3.log"; do
  ((SECONDS < deadline)) || { cat "$test_dir/push-v3.log" >&2; fail "the second push of v3 did not resume"; }
  sleep 1
done
echo "test-update: $(grep -m 1 resuming "$test_dir/push-v3.log")"
wait_for "$mark_v3" '"event":"update-installed"' 2400 >/dev/null
bad_started=$SECONDS
wait_for "$mark_v3" 'rauc.slot=A' "$boot_timeout" >/dev/null
line=$(wait_for "$mark_v3" '"event":"update-rejected"' "$boot_timeout")
echo "test-update: the gate rejected v3: $(grep -o '"reason":"[^"]*"' <<<"$line")"
wait_for "$mark_v3" '"event":"update-rolled-back"' "$boot_timeout" >/dev/null
back_s=$((SECONDS - bad_started))
echo "test-update: v3 reboot → back on slot B (rollback recorded) in $back_s s"
timeout 900 tail --pid="$push_pid" -f /dev/null || fail "push of v3 did not end"
wait "$push_pid" && fail "push of v3 reported success"
grep -q 'hub: rolled-back' "$test_dir/push-v3.log" || { cat "$test_dir/push-v3.log" >&2; fail "push did not report the rollback"; }
wait_retained "$topic_update" 300 '"state":"rolled-back"' '"running":\{"version":"2\.0\.0","slot":"B"\}' \
  '"target":\{"version":"3\.0\.0","slot":"A"\}' '"reason":"outpost\.service failed' >/dev/null
wait_retained "$topic_status" 300 '"state":"online"' '"version":"2\.0\.0"' >/dev/null
echo "test-update: status 2.0.0; update says rolled-back from 3.0.0 with the reason"

fi
if ((from <= 4)); then
step "4. the tampered bundle on a USB stick: refused, nothing written"
stick=$test_dir/stick.img
truncate -s 1G "$stick"
mkfs.vfat -F 32 -n OUTPOST "$stick" >/dev/null
mcopy -i "$stick" "$test_dir/v4-tampered.raucb" ::/outpost-amd64-4.0.0.raucb
sync
a_before=$(slot_sha A)
mark_usb=$(mark)
monitor "drive_add 0 if=none,id=stick,file=$stick,format=raw,readonly=on" "device_add usb-storage,drive=stick,id=stickdev,bus=xhci.0"
line=$(wait_for "$mark_usb" '"event":"update-refused"' 900)
grep -q '"code":"UPDATE_SIGNATURE_INVALID"' <<<"$line" || fail "the tampered bundle was refused for another reason: $line"
echo "test-update: refused: $(grep -o '"reason":"[^"]*"' <<<"$line" | cut -c1-200)"
wait_retained "$topic_update" 120 '"state":"refused"' '"code":"UPDATE_SIGNATURE_INVALID"' >/dev/null
sleep 5
[[ $(slot_sha A) == "$a_before" ]] || fail "slot A changed after a refused bundle"
echo "test-update: slot A's bytes unchanged"
monitor "device_del stickdev"

fi
if ((from <= 5)); then
step "5. a power cut while RAUC writes v4 into slot A"
mark_v4=$(mark)
push_v4 push-v4
wait_for "$mark_v4" 'writing data to device' 1800 >/dev/null
sleep 3
cut_power_and_expect_slot_b "while slot A was being written" update-interrupted failed 'cut short'
echo "test-update: booted slot B (2.0.0); the install is reported failed, cut short"

fi
if ((from <= 6)); then
step "6. a power cut during v4's first boot, before it commits"
mark_v4b=$(mark)
push_v4 push-v4b
wait_for "$mark_v4b" 'rauc.slot=A' 2400 >/dev/null
wait_for "$mark_v4b" '"event":"update-trial"' "$boot_timeout" >/dev/null
cut_power_and_expect_slot_b "during v4's trial boot" update-rolled-back rolled-back 'never committed'
echo "test-update: booted slot B (2.0.0) again; the rollback is reported"

fi
power_off
echo "test-update: PASSED in $((SECONDS - started)) s"
echo "{\"bundleMiB\":$bundle_mib,\"pushSeconds\":${push_s:-null},\"installSeconds\":${install_s:-null},\"rebootToCommittedSeconds\":${commit_s:-null},\"badUpdateBackSeconds\":${back_s:-null},\"totalSeconds\":$((SECONDS - started))}"
