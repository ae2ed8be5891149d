// bench:console's site, in a process of its own so that the hub's memory can be read apart from the
// browsers and the bench: test/support/console-site.ts (Janus, the hub daemon with a fake-pin panic
// button, a camera box). Speaks to the parent over IPC: `ready` with the addresses, `press` → `pressed`
// with the wall time just before the fake pin goes down, `hubTimes` → when the hub's broker handed on
// each alert and each alert's first inbox entry (for the press → alert breakdown), `stop` → exits.
import type { Broker } from '../daemon/src/mqtt/broker.js';
import { sitePrefix } from '../daemon/src/mqtt/topics.js';
import { SITE } from '../test/support/broker.js';
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

// The broker's own in-process subscriptions see a message when the broker hands it to its
// subscribers (after its store): the moment the page's WebSocket gets it written too.
const broker = site.app.services.find((service) => service.name === 'broker') as Broker;
/** alert id → [alert's own stamp (the trigger), broker handed on the alert, broker handed on its first inbox entry] */
const hubTimes = new Map<string, [number, number | undefined, number | undefined]>();
broker.subscribeLocal(`${sitePrefix(SITE)}/hub/alert`, (_topic, payload) => {
  const alert = JSON.parse(payload.toString('utf8')) as { id: string; at: number };
  const known = hubTimes.get(alert.id);
  if (!known) hubTimes.set(alert.id, [alert.at, Date.now(), undefined]);
});
broker.subscribeLocal(`${sitePrefix(SITE)}/inbox/+/hub/+`, (topic) => {
  const id = topic.split('/').at(-1) ?? '';
  const known = hubTimes.get(id);
  if (known && known[2] === undefined) known[2] = Date.now();
});

process.on('message', (message: { type: string }) => {
  if (message.type === 'press') {
    const at = Date.now();
    site.pin.set(0);
    setTimeout(() => site.pin.set(1), 100);
    send({ type: 'pressed', at });
  } else if (message.type === 'hubTimes') {
    send({ type: 'hubTimes', times: [...hubTimes.entries()] });
  } else if (message.type === 'stop') {
    void site.stop().finally(() => process.exit(0));
  }
});
process.on('disconnect', () => void site.stop().finally(() => process.exit(0)));
send({ type: 'ready', origin: site.origin, spki: site.spki, janus: site.janus.url, pid: process.pid });
