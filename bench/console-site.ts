// bench:console's site, in a process of its own so that the hub's memory can be read apart from the
// browsers and the bench: test/support/console-site.ts (Janus, the hub daemon with a fake-pin panic
// button, a camera box). Speaks to the parent over IPC: `ready` with the addresses, `press` → `pressed`
// with the wall time just before the fake pin goes down, `stop` → exits.
import { startConsoleSite } from '../test/support/console-site.js';

const site = await startConsoleSite({
  hubCameras: 3,
  boxCameras: 1,
  stamp: true,
  preRollSeconds: 1,
  postRollSeconds: 1,
});
const send = (message: object): void => {
  process.send?.(message);
};
process.on('message', (message: { type: string }) => {
  if (message.type === 'press') {
    const at = Date.now();
    site.pin.set(0);
    setTimeout(() => site.pin.set(1), 100);
    send({ type: 'pressed', at });
  } else if (message.type === 'stop') {
    void site.stop().finally(() => process.exit(0));
  }
});
process.on('disconnect', () => void site.stop().finally(() => process.exit(0)));
send({ type: 'ready', origin: site.origin, spki: site.spki, janus: site.janus.url, pid: process.pid });
