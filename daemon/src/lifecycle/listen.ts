// A listening socket for a subsystem: resolves once it listens; a port in use or a bad address is a
// START_FAILED error that names the subsystem, the address and the config keys to change.
import type { Server } from 'node:net';
import { OutpostError } from '../errors.js';

export async function listen(
  server: Server,
  address: { host: string; port: number },
  /** The config section holding `host` and `port`, and what listens there in words. */
  section: string,
  name = section,
): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: address.host, port: address.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new OutpostError(
      'START_FAILED',
      `cannot listen for ${name} on ${address.host}:${address.port} (${code ?? 'error'})`,
      {
        hint:
          code === 'EADDRINUSE'
            ? `another program (another outpost, mosquitto?) holds the port: stop it or change ${section}.port`
            : `check ${section}.host and ${section}.port`,
        cause: error,
      },
    );
  }
}
