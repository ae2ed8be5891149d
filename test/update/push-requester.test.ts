// A command whose publish takes longer than its reply timeout (a slow box, a full socket) fails that
// one command, which the push retries; it must not end the tool with an unhandled rejection.
import type { MqttClient } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { Requester } from '../../daemon/src/update/push.js';

describe('outpost update push: one command to a box', () => {
  it('a reply timeout that passes while the publish is still under way rejects that command only', async () => {
    const client = {
      on: () => client,
      publishAsync: () => new Promise((resolve) => setTimeout(resolve, 200)),
    } as unknown as MqttClient;
    const requester = new Requester(client, 'test', 'box1');
    await expect(requester.ask('update-chunk', {}, 20, 0)).rejects.toThrow(
      /no reply to update-chunk from box1 within 0\.02 s/,
    );
  });

  it('a publish that fails rejects the command with its error', async () => {
    const client = {
      on: () => client,
      publishAsync: () => Promise.reject(new Error('connection closed')),
    } as unknown as MqttClient;
    const requester = new Requester(client, 'test', 'box1');
    await expect(requester.ask('update-chunk', {}, 50, 0)).rejects.toThrow('connection closed');
    await new Promise((resolve) => setTimeout(resolve, 100)); // the reply timer fires, handled
  });
});
