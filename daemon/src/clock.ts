// Two clocks. Wall time (Date.now) is what people read: alerts, manifests, logs. It steps: a Pi has no
// real-time clock, so a box boots with its image's date and chrony steps the clock once it reaches the
// hub, with the cameras already running. The pre-roll's segments and a clip's window are compared on
// the steady clock instead, which never steps: CLOCK_MONOTONIC in milliseconds, the same clock in every
// process of the box (the camera workers report on it too).

/** Milliseconds on the steady clock (CLOCK_MONOTONIC: since boot, never stepped). */
export function steadyNow(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** A wall time of a moment ago, on the steady clock (by how long ago it was, on the wall clock now). */
export function wallToSteady(wallMs: number): number {
  return steadyNow() - (Date.now() - wallMs);
}

/** A steady time, as wall time on the wall clock as it reads now. */
export function steadyToWall(steadyMs: number): number {
  return Date.now() - (steadyNow() - steadyMs);
}
