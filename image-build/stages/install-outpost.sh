#!/usr/bin/env bash
# Stage "outpost-files": put Outpost into a root filesystem folder, from the host, without running
# anything of the target (so it works the same for an arm64 root on an amd64 host, and on an empty
# folder in test/image/recipe.test.ts). Needs `npm run build` done (dist/).
#
#   install-outpost.sh ROOT [--disk-id HEX8] [--read-only-root]
#
# Installs: the compiled daemon and provisioning CLI + package files under /usr/lib/outpost (its
# node_modules come later, built inside the target: stages/node-modules.sh), the units from systemd/
# enabled, the journald drop-in, the outpost user and gpio group (systemd-sysusers), a udev rule for
# /dev/gpiochip*, chrony without public NTP, systemd-networkd DHCP, the fstab of the image's three
# partitions (boot FAT, root, data on /var/lib/outpost), the unit that grows the data partition to the
# card at boot, hostname `outpost` until first boot; with
# --read-only-root, a unit that remounts / read-only after first boot, before the daemon.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
root=${1:?usage: install-outpost.sh ROOT [--disk-id HEX8] [--read-only-root]}
shift
disk_id=4f757470 # "Outp": the MBR disk id, so partitions are PARTUUID=4f757470-0N on every card
read_only=0
while (($# > 0)); do
  case $1 in
    --disk-id) disk_id=$2; shift 2 ;;
    --read-only-root) read_only=1; shift ;;
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
install -m 0644 "$repo/systemd/journald-outpost.conf" "$root/etc/systemd/journald.conf.d/outpost.conf"
install -m 0644 "$here/files/20-wired.network" "$root/etc/systemd/network/20-wired.network"
systemctl --root="$root" --quiet enable outpost.service outpost-firstboot.service
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
# The data dir is a mount point (partition 3): keep it empty and root's until systemd's StateDirectory=
# hands it to outpost at the daemon's first start.
install -d -m 0755 "$root/var/lib/outpost" "$root/boot/firmware"

# --- time: chrony without public NTP (files/chrony-outpost.conf); first boot adds the role's settings
# (the hub serves, a camera follows the hub) as /etc/chrony/conf.d/outpost-role.conf.
install -d -m 0755 "$root/etc/chrony/conf.d"
install -m 0644 "$here/files/chrony-outpost.conf" "$root/etc/chrony/conf.d/outpost.conf"
if [[ -f $root/etc/chrony/chrony.conf ]]; then
  sed -i -E 's/^(pool|server) /# no public NTP on an isolated site (etc\/chrony\/conf.d\/outpost.conf): &/' \
    "$root/etc/chrony/chrony.conf"
fi

# --- partitions: boot FAT (bundle goes there), root, data (image-build/README.md, "Layout")
cat >"$root/etc/fstab" <<FSTAB
# Outpost image (image-build/README.md): MBR disk id $disk_id, the same on every card.
PARTUUID=$disk_id-02  /                 ext4   defaults,noatime,errors=remount-ro  0 1
PARTUUID=$disk_id-01  /boot/firmware    vfat   defaults,noatime,umask=0077,shortname=lower  0 2
PARTUUID=$disk_id-03  /var/lib/outpost  ext4   defaults,noatime,nodev,nosuid,noexec  0 2
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
