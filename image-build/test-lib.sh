# Shared by the image tests that boot the twin under qemu (test-update.sh; sourced, not run).
# Every wait is bounded; the caller's EXIT trap prints the serial log on failure (print_serial).
# The caller sets: repo, test_dir (a fresh folder), serial (the serial log of the current qemu run).

started=${started:-$SECONDS}
qemu_pid=''
step() { echo "--- ${test_name:-test} [$((SECONDS - started)) s]: $*"; }
fail() { echo "${test_name:-test}: $*" >&2; exit 1; }
provision() { node "$repo/provisioning/bin/outpost-provision.js" "$@"; }
outpost_cli() { node "$repo/dist/daemon/src/cli.js" "$@"; }

# provision_hub SITE_NAME: a site whose hub certificate names 127.0.0.1 (checked fully through the port
# forward), its hub's bundle in test_dir/outpost-bundle.json, a console account `ops`.
provision_hub() {
  site=$test_dir/site
  provision site init "$site" --site "$1" --hub-host hub --hub-ip 127.0.0.1 --hub-cameras none >/dev/null
  provision device add hub --role hub --cameras none -d "$site" >/dev/null
  provision console add ops --password-file "$test_dir/ops.password" -d "$site" >/dev/null
  provision bundle hub --out "$test_dir/outpost-bundle.json" -d "$site" >/dev/null
}

free_tcp_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }

# start_qemu DISK VARS [EXTRA…]: the amd64 twin under OVMF, the hub's MQTT TLS port forwarded to
# 127.0.0.1:$port; a USB controller for sticks added later (monitor). Reboots stay inside qemu;
# a power-off ends it. Appends to $serial.
start_qemu() {
  local disk=$1 vars=$2
  shift 2
  nice -n 10 qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m 1024 -nographic \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,file="$vars" \
    -drive file="$disk",format=raw,if=virtio \
    -netdev user,id=net0,hostfwd=tcp:127.0.0.1:$port-:8883 -device virtio-net-pci,netdev=net0 \
    -device qemu-xhci,id=xhci \
    -monitor unix:"$test_dir/monitor.sock",server,nowait "$@" </dev/null >>"$serial" 2>&1 &
  qemu_pid=$!
}

# power_cut: qemu killed at once, as a pulled plug.
power_cut() {
  [[ -n $qemu_pid ]] && kill -9 "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=''
}

monitor() {
  printf '%s\n' "$@" | timeout 10 node -e '
    const s = require("net").connect(process.argv[1]); process.stdin.pipe(s); s.on("data", () => {});
    setTimeout(() => process.exit(0), 2000);
  ' "$test_dir/monitor.sock" >/dev/null || true
}

# power_off [SECONDS]: ACPI power button, then wait for qemu to end (killed after the bound).
power_off() {
  monitor system_powerdown
  local deadline=$((SECONDS + ${1:-180}))
  while kill -0 "$qemu_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 2; done
  if kill -0 "$qemu_pid" 2>/dev/null; then echo "${test_name:-test}: no clean power-off; stopping qemu" >&2; fi
  power_cut
}

# mark: the serial log's line count now; wait_for MARK PATTERN SECONDS: PATTERN (fixed string) in a
# line after MARK, or fail. Prints the matching line.
mark() { wc -l <"$serial"; }
wait_for() {
  local from=$1 pattern=$2 limit=$3 deadline=$((SECONDS + $3)) line
  while :; do
    line=$(tail -n +"$((from + 1))" "$serial" | grep -F -m 1 -- "$pattern" || true)
    [[ -n $line ]] && { echo "$line"; return 0; }
    kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited before \"$pattern\""
    ((SECONDS < deadline)) || fail "no \"$pattern\" on the serial console within $limit s"
    sleep 2
  done
}

# retained TOPIC: the retained message on TOPIC, read over TLS as the console account (bounded).
retained() {
  local topic=$1 payload='' deadline=$((SECONDS + ${2:-120}))
  while ((SECONDS < deadline)); do
    payload=$(timeout 30 mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$site/ca/ca.crt" \
      -u ops -P "$(cat "$test_dir/ops.password")" -i "test-$RANDOM" -t "$topic" -C 1 -W 20 2>&1) && { echo "$payload"; return 0; }
    sleep 3
  done
  echo "$payload"
  return 1
}

# wait_retained TOPIC SECONDS REGEX…: until the retained message matches every REGEX (extended).
wait_retained() {
  local topic=$1 deadline=$((SECONDS + $2)) payload='' regex ok
  shift 2
  while ((SECONDS < deadline)); do
    payload=$(retained "$topic" 60 || true)
    ok=1
    for regex in "$@"; do grep -qE -- "$regex" <<<"$payload" || ok=0; done
    ((ok)) && { echo "$payload"; return 0; }
    sleep 5
  done
  fail "$topic did not match /$*/ within the time; last: $payload"
}

print_serial() {
  echo "${test_name:-test}: serial log ($serial), last 400 lines:" >&2
  [[ -f $serial ]] && tail -n 400 "$serial" >&2
}
