#!/usr/bin/env bash
# Stage "node-modules" (an mmdebstrap customize hook: $1 is the target root, its /proc, /sys and /dev
# mounted by mmdebstrap): Node from the npm registry's node-linux-<arch> package (checked against
# node.lock), then `npm ci --omit=dev` run *inside* the target root with the target's own Node, so the
# native addons (gstreamer-superficial, unix-dgram, epoll, classic-level) build against the image's
# GStreamer headers and Node; on arm64 through qemu-user-static. The compilers and -dev packages are
# installed for this step only and purged after it.
#
#   node-modules.sh ROOT ARCH CACHE_DIR
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=$1 arch=$2 cache=$3
node_arch=$([[ $arch == amd64 ]] && echo x64 || echo arm64)
version=$(awk '$1 == "version" {print $2}' "$here/node.lock")
integrity=$(awk -v a="$arch" '$1 == a {print $2}' "$here/node.lock")
tarball=$cache/node/node-linux-$node_arch-$version.tgz

# --- Node: fetch once into the cache (npm pack), refuse it unless it is the published tarball
mkdir -p "$cache/node" "$cache/npm"
if [[ ! -f $tarball ]]; then
  (cd "$cache/node" && npm pack --silent "node-linux-$node_arch@$version" >/dev/null)
fi
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ $actual != "$integrity" ]]; then
  echo "node-modules: $tarball has $actual, node.lock says $integrity: delete it and check node.lock" >&2
  exit 1
fi
echo "node-modules: node-linux-$node_arch@$version matches node.lock ($integrity)"
nodedir=$root/usr/lib/outpost/node
rm -rf "$nodedir" && mkdir -p "$nodedir"
tar -xzf "$tarball" -C "$nodedir" --strip-components=1 --no-same-owner package/bin package/include package/LICENSE
ln -sf ../lib/outpost/node/bin/node "$root/usr/bin/node"
chroot "$root" /usr/bin/node -e 'const [major] = process.versions.node.split(".").map(Number);
  if (major < 20) { console.error(`Node ${process.version} < 20`); process.exit(1); }
  console.log(`node-modules: target Node ${process.version} ${process.arch}`)'

# --- build dependencies, for this step only
# (The package set is recorded first: afterwards every package that was not there is purged, whatever
# apt's autoremove would keep for a Recommends.)
build_deps=(build-essential python3 pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev)
installed() { chroot "$root" dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" {print $2}' | sort; }
installed >"$root/tmp/packages-before-build"
chroot "$root" apt-get install -y -q --no-install-recommends "${build_deps[@]}" >/dev/null

# --- npm ci inside the root, with the host's npm (pure JavaScript) copied in for the duration and the
# npm cache carried between builds in CACHE_DIR/npm. nodedir: node-gyp takes headers from the Node
# package (no download from nodejs.org, which an offline build machine cannot reach).
# The build machine's registry and its CA file (a TLS-inspecting proxy's CA is in the host's trust
# store, not in the target's ca-certificates) are handed to the npm in the root.
rm -rf "$root/tmp/npm" "$root/tmp/npm-cache" "$root/tmp/npm-ca.pem"
cp -r "$(npm root -g)/npm" "$root/tmp/npm"
cp -r "$cache/npm" "$root/tmp/npm-cache"
registry=$(npm config get registry 2>/dev/null)
cafile=$(npm config get cafile 2>/dev/null)
npm_env=(HOME=/tmp npm_config_cache=/tmp/npm-cache npm_config_registry="$registry"
  npm_config_nodedir=/usr/lib/outpost/node npm_config_update_notifier=false npm_config_prefer_offline=true)
if [[ -n $cafile && $cafile != null && -f $cafile ]]; then
  cp "$cafile" "$root/tmp/npm-ca.pem"
  npm_env+=(npm_config_cafile=/tmp/npm-ca.pem)
fi
chroot "$root" /usr/bin/env "${npm_env[@]}" /bin/sh -c 'cd /usr/lib/outpost &&
  /usr/bin/node /tmp/npm/bin/npm-cli.js ci --omit=dev --no-audit --no-fund --loglevel=warn'
rm -rf "$cache/npm" && mv "$root/tmp/npm-cache" "$cache/npm"
rm -rf "$root/tmp/npm" "$root/tmp/npm-ca.pem" "$root/tmp/node-compile-cache" "$root/tmp/.npm" "$root/tmp/.cache"

# Each native addon must load in the target's Node (a wrong-architecture or missing build fails here).
chroot "$root" /bin/sh -c 'cd /usr/lib/outpost && /usr/bin/node -e "
  for (const m of [\"gstreamer-superficial\", \"unix-dgram\", \"epoll\", \"classic-level\"]) {
    require(m); console.log(\"node-modules: loads \" + m);
  }"'

# --- drop what only the build needed: compilers, headers, Node's include/
mapfile -t added < <(installed | comm -13 "$root/tmp/packages-before-build" -)
echo "node-modules: purging the ${#added[@]} packages installed for the build"
chroot "$root" apt-get purge -y -q "${added[@]}" >/dev/null
rm -f "$root/tmp/packages-before-build"
rm -rf "$nodedir/include"
chown -R root:root "$root/usr/lib/outpost"
