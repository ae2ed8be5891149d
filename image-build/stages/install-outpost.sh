#!/usr/bin/env bash
# Stage "outpost-files": put Outpost into a root filesystem folder, from the host, without running
# anything of the target (so it works the same for an arm64 root on an amd64 host, and on an empty
# folder in test/image/recipe.test.ts). Needs `npm run build` done (dist/).
#
#   install-outpost.sh ROOT [--disk-id HEX8] [--read-only-root]
#
# Installs: the compiled daemon and provisioning CLI + package files under /usr/lib/outpost (its
# node_modules come later, built inside the target: stages/node-modules.sh) with the release facts
# (/usr/lib/outpost/release: version, arch, boot method, compatible string), the units from systemd/
# enabled, the journald drop-in, the outpost user and gpio group (systemd-sysusers), a udev rule for
# /dev/gpiochip*, chrony without public NTP, systemd-networkd DHCP, the fstab of the image's
# partitions (boot FAT, root slots A/B, data on /data with /var/lib/outpost bind-mounted from it and
# /etc/outpost a link into it), the unit that grows the data partition to the card at boot, the
# updater (RAUC's system.conf, the keyring, the boot backend, the update units and the USB udev
# rule: docs/updates.md), hostname `outpost` until first boot; with --read-only-root, a unit that
# remounts / read-only after first boot, before the daemon.
#
#   install-outpost.sh ROOT [--disk-id HEX8] [--read-only-root] [--arch amd64|arm64] [--boot efi|rpi]
#                           [--version V] [--keyring PEM] [--serial-journal] [--health-window S]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
root=${1:?usage: install-outpost.sh ROOT [--disk-id HEX8] [--read-only-root] [--arch A] [--boot B] [--version V] [--keyring PEM]}
shift
disk_id=4f757470 # "Outp": the MBR disk id, so partitions are PARTUUID=4f757470-0N on every card
read_only=0 arch=amd64 boot=efi version='' keyring='' serial_journal=0 health_window=''
while (($# > 0)); do
  case $1 in
    --disk-id) disk_id=$2; shift 2 ;;
    --read-only-root) read_only=1; shift ;;
    --arch) arch=$2; shift 2 ;;
    --boot) boot=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --keyring) keyring=$2; shift 2 ;;
    --serial-journal) serial_journal=1; shift ;;
    --health-window) health_window=$2; shift 2 ;;
    *) echo "install-outpost.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -d $root ]] || { echo "install-outpost.sh: $root is not a folder" >&2; exit 2; }
[[ -f $repo/dist/daemon/src/cli.js && -f $repo/dist/provisioning/src/cli.js && -f $repo/dist/console/index.html ]] ||
  { echo "install-outpost.sh: no dist/: run \`npm run build\` first" >&2; exit 2; }

# --- the daemon: compiled JavaScript, package files (node_modules: stages/node-modules.sh), docs
lib=$root/usr/lib/outpost
rm -rf "$lib/dist"
install -d -m 0755 "$lib" "$lib/dist" "$lib/docs"
# dist/console: the site console's page, which a hub serves (docs/console.md).
cp -r "$repo/dist/daemon" "$repo/dist/provisioning" "$repo/dist/console" "$lib/dist/"
install -m 0644 "$repo/package.json" "$repo/package-lock.json" "$lib/"
# The release this root is: the daemon reports package.json's version; the updater compares bundles
# with release (docs/updates.md). --version stamps both (a release build, or test-update's v2/v3).
version=${version:-$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$lib/package.json")}
sed -i "s/^  \"version\": \".*\",\$/  \"version\": \"$version\",/" "$lib/package.json"
cat >"$lib/release" <<RELEASE
VERSION=$version
ARCH=$arch
BOOT_METHOD=$boot
COMPATIBLE=outpost-$arch-$boot
RELEASE
chmod 0644 "$lib/release"
install -m 0644 "$repo"/docs/*.md "$lib/docs/"
chmod -R u=rwX,go=rX "$lib/dist"
install -d -m 0755 "$root/usr/bin"
cat >"$root/usr/bin/outpost" <<'SH'
#!/bin/sh
# The `outpost` command on the box (README.md): the daemon's CLI.
exec /usr/bin/node /usr/lib/outpost/dist/daemon/src/cli.js "$@"
SH
cat >"$root/usr/bin/outpost-provision" <<'SH'
#!/bin/sh
# `outpost-provision` on the box (docs/provisioning.md); first boot runs it from its unit.
exec /usr/bin/node /usr/lib/outpost/dist/provisioning/src/cli.js "$@"
SH
chmod 0755 "$root/usr/bin/outpost" "$root/usr/bin/outpost-provision"

# --- users and groups: outpost (+ video, gpio), created offline from the sysusers.d file
install -d -m 0755 "$root/usr/lib/sysusers.d" "$root/etc"
install -m 0644 "$here/files/sysusers-outpost.conf" "$root/usr/lib/sysusers.d/outpost.conf"
systemd-sysusers --root="$root" >/dev/null
install -d -m 0755 "$root/etc/udev/rules.d"
install -m 0644 "$here/files/99-outpost-gpio.rules" "$root/etc/udev/rules.d/99-outpost-gpio.rules"

# --- units and journald drop-in (systemd/README.md says where each goes)
units=$root/usr/lib/systemd/system
install -d -m 0755 "$units" "$root/etc/systemd/journald.conf.d" "$root/etc/systemd/network"
install -m 0644 "$repo/systemd/outpost.service" "$repo/systemd/outpost-firstboot.service" "$units/"
install -m 0644 "$repo"/systemd/outpost-update-*.service "$repo"/systemd/outpost-update-*.path \
  "$repo/systemd/outpost-firstboot-led.service" "$units/"
install -m 0644 "$repo/systemd/journald-outpost.conf" "$root/etc/systemd/journald.conf.d/outpost.conf"
install -m 0644 "$here/files/20-wired.network" "$root/etc/systemd/network/20-wired.network"
systemctl --root="$root" --quiet enable outpost.service outpost-firstboot.service \
  outpost-update-gate.service outpost-update-deadline.service outpost-update-install.path
# Networking by systemd-networkd, when the root has it (not in the recipe test's empty folder).
if [[ -f $units/systemd-networkd.service ]]; then
  systemctl --root="$root" --quiet enable systemd-networkd.service
  # Nothing waits for "online": an isolated site has no internet to be online to (systemd/README.md).
  systemctl --root="$root" --quiet disable systemd-networkd-wait-online.service 2>/dev/null || true
fi
# The data partition grows to the end of the card at boot (files/outpost-grow-data), before the daemon.
install -m 0755 "$here/files/outpost-grow-data" "$lib/grow-data"
install -m 0644 "$here/files/outpost-grow-data.service" "$units/"
systemctl --root="$root" --quiet enable outpost-grow-data.service
# /data is partition 4, shared by both root slots: the daemon's data dir (/data/outpost, bind-mounted on
# /var/lib/outpost, handed to outpost by StateDirectory= at the daemon's first start), the box's
# configuration (/etc/outpost is a link to /data/etc/outpost: first boot writes it there, and every slot
# reads the same), and the updater's state (/data/update). Mount points stay empty and root's. The link
# is relative (../data/etc/outpost), so it also resolves inside a root folder (firstboot --root).
install -d -m 0755 "$root/var/lib/outpost" "$root/boot/firmware" "$root/data"
rm -rf "$root/etc/outpost"
ln -s ../data/etc/outpost "$root/etc/outpost"

# --- updates (docs/updates.md): RAUC with our boot backend; the keyring checks every bundle's signature
update=$lib/update
install -d -m 0755 "$update" "$root/etc/rauc"
install -m 0755 "$here/files/outpost-boot" "$update/boot"
case $boot in
  efi) console='console=ttyS0,115200' ;;
  # Debian's raspi-firmware puts the console on the Pi's mini UART (GPIO 14/15) and the screen.
  rpi) console='console=tty0 console=ttyS1,115200 fsck.repair=yes net.ifnames=0 cma=64M' ;;
  *) echo "install-outpost.sh: --boot efi or rpi, not $boot" >&2; exit 2 ;;
esac
# Tests read the journal on the serial console (build.sh --serial-journal); boxes in the field do not.
((serial_journal)) && console+=' systemd.journald.forward_to_console=1 systemd.show_status=1'
cat >"$update/boot.conf" <<CONF
# outpost-boot's settings (/usr/lib/outpost/update/boot; docs/updates.md)
BOOT_METHOD=$boot
ESP=/boot/firmware
DISK_ID=$disk_id
# Boots a slot on trial gets before the committed slot starts again: one, like the Pi's tryboot.
TRIES=1
CMDLINE="$console"
CONF
cat >"$root/etc/rauc/system.conf" <<CONF
# RAUC (docs/updates.md): two root slots, a boot backend of our own, plain bundles signed by the
# update key (never a site CA), checked against the keyring before anything is written.
[system]
compatible=outpost-$arch-$boot
bootloader=custom
mountprefix=/run/rauc
statusfile=/data/update/rauc.status
bundle-formats=plain

[keyring]
path=/etc/rauc/keyring.pem
check-purpose=codesign

[handlers]
bootloader-custom-backend=/usr/lib/outpost/update/boot

[slot.rootfs.0]
device=/dev/disk/by-partuuid/$disk_id-02
type=ext4
bootname=A
resize=true

[slot.rootfs.1]
device=/dev/disk/by-partuuid/$disk_id-03
type=ext4
bootname=B
resize=true
CONF
if [[ -n $keyring ]]; then
  install -m 0644 "$keyring" "$root/etc/rauc/keyring.pem"
fi
# RAUC's D-Bus policy lets any local user call it; only root may (the daemon's user never installs).
install -d -m 0755 "$root/etc/dbus-1/system.d"
install -m 0644 "$here/files/outpost-rauc-dbus.conf" "$root/etc/dbus-1/system.d/outpost-rauc.conf"
# A USB stick with a bundle: udev starts outpost-update-usb@DEVICE.service.
install -m 0644 "$here/files/90-outpost-update-usb.rules" "$root/etc/udev/rules.d/90-outpost-update-usb.rules"
# build.sh --health-window S (emulation): the gate's window and the deadline unit's, as drop-ins.
for unit in outpost-update-gate outpost-update-deadline; do rm -rf "$root/etc/systemd/system/$unit.service.d"; done
if [[ -n $health_window ]]; then
  install -d -m 0755 "$root/etc/systemd/system/outpost-update-gate.service.d" "$root/etc/systemd/system/outpost-update-deadline.service.d"
  printf '[Service]\nEnvironment=OUTPOST_UPDATE_WINDOW_SECONDS=%s\n' "$health_window" \
    >"$root/etc/systemd/system/outpost-update-gate.service.d/window.conf"
  printf '[Service]\nEnvironment=OUTPOST_UPDATE_DEADLINE_SECONDS=%s\n' "$((health_window + 240))" \
    >"$root/etc/systemd/system/outpost-update-deadline.service.d/window.conf"
fi
# systemd-boot's own blessing would commit a slot at boot-complete.target; the health gate does it.
install -d -m 0755 "$root/etc/systemd/system"
ln -sf /dev/null "$root/etc/systemd/system/systemd-bless-boot.service"
# A hung kernel or PID 1 resets the board (Pi: bcm2835-wdt; qemu: i6300esb): a slot on trial that hangs
# comes back on the committed slot. Harmless where there is no watchdog device.
install -d -m 0755 "$root/etc/systemd/system.conf.d"
printf '[Manager]\nRuntimeWatchdogSec=1min\nRebootWatchdogSec=5min\n' >"$root/etc/systemd/system.conf.d/outpost-watchdog.conf"

# --- time: chrony without public NTP (files/chrony-outpost.conf); first boot adds the role's settings
# (the hub serves, a camera follows the hub) as /etc/chrony/conf.d/outpost-role.conf.
install -d -m 0755 "$root/etc/chrony/conf.d"
install -m 0644 "$here/files/chrony-outpost.conf" "$root/etc/chrony/conf.d/outpost.conf"
if [[ -f $root/etc/chrony/chrony.conf ]]; then
  sed -i -E 's/^(pool|server) /# no public NTP on an isolated site (etc\/chrony\/conf.d\/outpost.conf): &/' \
    "$root/etc/chrony/chrony.conf"
fi

# --- partitions: boot FAT (bundle goes there), root slot A or B, data (image-build/README.md, "Layout").
# No line for /: the kernel mounts the slot it was given (root=PARTUUID=…-02 or -03, rw) and the
# read-only unit below remounts it.
cat >"$root/etc/fstab" <<FSTAB
# Outpost image (image-build/README.md): MBR disk id $disk_id, the same on every card. / is the root slot
# on the kernel command line (A = partition 2, B = partition 3: docs/updates.md).
PARTUUID=$disk_id-01  /boot/firmware    vfat   defaults,noatime,umask=0077,shortname=lower  0 2
PARTUUID=$disk_id-04  /data             ext4   defaults,noatime,nodev,nosuid,noexec  0 2
/data/outpost         /var/lib/outpost  none   bind,x-systemd.requires-mounts-for=/data  0 0
tmpfs                 /tmp              tmpfs  nosuid,nodev,mode=1777,size=64M  0 0
FSTAB
if ((read_only)); then
  # Read-only root: / is mounted read-write at boot, as usual, so that first boot can write /etc
  # (/etc/outpost, hostname, hosts) and systemd can commit the machine id; then, before the daemon
  # starts, it is remounted read-only for the rest of the uptime (when a power cut is likely).
  # (Mounting / ro from fstab and remounting it rw around first boot does not work: the unit's
  # ProtectSystem=strict namespace is set up while / is still read-only.)
  echo 'tmpfs                 /var/tmp          tmpfs  nosuid,nodev,mode=1777,size=32M  0 0' >>"$root/etc/fstab"
  cat >"$root/etc/systemd/system/outpost-read-only-root.service" <<'UNIT'
# image-build --read-only-root: mount / read-only once first boot is done, before the daemon starts.
[Unit]
Description=Outpost: mount the root filesystem read-only
After=outpost-firstboot.service systemd-machine-id-commit.service systemd-random-seed.service
After=systemd-tmpfiles-setup.service local-fs.target
Before=outpost.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount -o remount,ro /

[Install]
WantedBy=multi-user.target
UNIT
  systemctl --root="$root" --quiet enable outpost-read-only-root.service
fi

# --- hostname until first boot names the box after its device
echo outpost >"$root/etc/hostname"
if [[ -f $root/etc/hosts ]] && ! grep -q '^127\.0\.1\.1' "$root/etc/hosts"; then
  printf '127.0.1.1\toutpost\n' >>"$root/etc/hosts"
elif [[ ! -f $root/etc/hosts ]]; then
  printf '127.0.0.1\tlocalhost\n127.0.1.1\toutpost\n' >"$root/etc/hosts"
fi
