#!/usr/bin/env bash
# try-raspi3b.sh: boot the arm64 image on qemu's Raspberry Pi 3B model (-M raspi3b), with slot A's own
# kernel, initrd and the Pi 3's upstream DTB from the image's boot partition, and report what worked:
# how far it got (kernel, systemd, the daemon), and the GPIO chips the kernel made (pinctrl-bcm2835's
# label and base: what the gpiod backend would resolve BCM numbers against). A report, not a test:
# qemu's raspi3b has no VideoCore firmware, no Pi boot ROM and no network the image configures.
#
#   image-build/try-raspi3b.sh [IMAGE]   (default WORK/out/outpost-arm64.img; WORK as build.sh)
# Environment: OUTPOST_RASPI3B_TIMEOUT seconds (default 1800).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${OUTPOST_IMAGE_WORK:-/var/tmp/outpost-image}
image=${1:-$work/out/outpost-arm64.img}
limit=${OUTPOST_RASPI3B_TIMEOUT:-1800}
dir=$work/try-raspi3b
serial=$dir/serial.log
[[ -f $image ]] || { echo "try-raspi3b: no $image: build.sh --arch arm64 first" >&2; exit 2; }
rm -rf "$dir" && mkdir -p "$dir"
qemu_pid=''
trap '[[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null; true' EXIT

# The SD card of qemu's raspi machines must be a power of two in size.
cp --sparse=always "$image" "$dir/sd.img"
size=$(stat -c %s "$dir/sd.img") pow=1
while ((pow < size)); do pow=$((pow * 2)); done
truncate -s "$pow" "$dir/sd.img"
fat="$dir/sd.img@@1M"
mcopy -n -i "$fat" ::/slot-a/vmlinuz "$dir/kernel" # uncompressed (outpost-boot install-kernel)
mcopy -n -i "$fat" ::/slot-a/initrd.img "$dir/initrd"
mcopy -n -i "$fat" ::/slot-a/bcm2837-rpi-3-b.dtb "$dir/pi3.dtb"

# systemd.run prints the GPIO chips once the system is up (systemd's run generator), then carries on.
report='for c in /sys/bus/gpio/devices/gpiochip*; do echo "GPIOCHIP $(basename $c) label=$(cat $c/../../label 2>/dev/null || cat $c/label 2>/dev/null) "; done; for c in /sys/class/gpio/gpiochip*; do echo "SYSFS $(basename $c) label=$(cat $c/label) base=$(cat $c/base) ngpio=$(cat $c/ngpio)"; done; ls -l /dev/gpiochip*'
append="root=PARTUUID=4f757470-02 rootfstype=ext4 rootwait rw rauc.slot=A console=ttyAMA0,115200"
append+=" systemd.journald.forward_to_console=1 systemd.show_status=1"
append+=" systemd.run=\"/bin/sh -c '$report'\" systemd.run_success_action=none"
started=$SECONDS
nice -n 10 qemu-system-aarch64 -M raspi3b -kernel "$dir/kernel" -initrd "$dir/initrd" -dtb "$dir/pi3.dtb" \
  -append "$append" -drive file="$dir/sd.img",if=sd,format=raw -nographic -no-reboot </dev/null >"$serial" 2>&1 &
qemu_pid=$!
seen() { grep -qF -- "$1" "$serial" 2>/dev/null; }
milestones=('Booting Linux' 'Run /init' 'systemd[1]' 'Reached target' 'GPIOCHIP' 'Started outpost' 'Kernel panic')
while kill -0 "$qemu_pid" 2>/dev/null && ((SECONDS - started < limit)); do
  if seen 'Kernel panic' || seen 'Started outpost' || seen 'emergency mode'; then break; fi
  if seen 'SYSFS gpiochip' && ((SECONDS - started > 60)) && seen 'Reached target'; then sleep 30; break; fi
  sleep 10
done
echo "try-raspi3b: after $((SECONDS - started)) s (serial log: $serial):"
for milestone in "${milestones[@]}"; do
  if seen "$milestone"; then echo "  seen:     $milestone"; else echo "  not seen: $milestone"; fi
done
grep -E 'GPIOCHIP|SYSFS gpiochip|gpiochip[0-9]|pinctrl-bcm2835|Kernel panic|emergency' "$serial" | head -20 | sed 's/^/  /' || true
