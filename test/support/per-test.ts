// What a test file opens per test and closes after it: the embedded broker and MQTT.js clients.
import type { MqttClient } from 'mqtt';
import { afterEach } from 'vitest';
import { startTestBroker, type TestBroker } from './broker.js';

export interface BrokerPerTest {
  /** Starts this test's broker; it is stopped after the test. */
  start(options?: Parameters<typeof startTestBroker>[0]): Promise<TestBroker>;
  /** This test's broker (throws when the test started none). */
  readonly hub: TestBroker;
  /** Clients ended after the test, before the broker stops: push each one opened. */
  readonly clients: MqttClient[];
}

/** Registers the afterEach that ends a test's clients and stops its broker. Call at the file's top. */
export function brokerPerTest(): BrokerPerTest {
  let hub: TestBroker | undefined;
  const clients: MqttClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.endAsync(true)));
    await hub?.stop();
    hub = undefined;
  });
  return {
    async start(options) {
      hub = await startTestBroker(options);
      return hub;
    },
    get hub() {
      if (!hub) throw new Error('this test started no broker: call start() first');
      return hub;
    },
    clients,
  };
}
