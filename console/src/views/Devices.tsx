// Devices: every box, online or offline (its retained status, or the last will the hub published for
// it), its cameras' states, its last telemetry with the threshold state (the open threshold alerts of
// the inbox), and the last hour of CPU and temperature, which the hub keeps so the chart is there the
// moment the page opens. Operators can restart a camera and ask a box for a clip from here.
import { useState } from 'preact/hooks';
import type { Sample } from '../api.js';
import { formatTime, useSite, useTick } from '../hooks.js';
import type { DeviceView, Site } from '../site.js';

function percent(used: number, total: number): number {
  return total > 0 ? (used / total) * 100 : 0;
}

/** The open (raised, not cleared) threshold alert of `kind` for this box: its severity. */
function thresholdState(
  site: Site,
  device: string,
  kind: 'temperature' | 'disk' | 'memory',
): 'ok' | 'warning' | 'critical' {
  let state: 'ok' | 'warning' | 'critical' = 'ok';
  for (const entry of site.inbox.values()) {
    if (entry.device !== device || entry.alert.kind !== kind || entry.alert.state !== 'raised') continue;
    state = entry.alert.severity === 'critical' ? 'critical' : state === 'critical' ? state : 'warning';
  }
  return state;
}

function Chart({ samples }: { samples: Sample[] }) {
  const width = 300;
  const height = 80;
  const now = Date.now();
  const since = now - 3600_000;
  const x = (at: number) => Math.max(0, ((at - since) / 3600_000) * width);
  // 0–100 (CPU %, and °C on the same scale), 3 px clear of the edges so 100 % is not hidden.
  const y = (value: number) => 3 + (1 - Math.min(Math.max(value, 0), 100) / 100) * (height - 6);
  const cpu = samples.map(([at, load]) => `${x(at).toFixed(1)},${y(load).toFixed(1)}`).join(' ');
  const temps = samples.filter((sample): sample is [number, number, number] => sample[2] !== null);
  const temp = temps.map(([at, , c]) => `${x(at).toFixed(1)},${y(c).toFixed(1)}`).join(' ');
  const lastCpu = samples.at(-1)?.[1];
  const lastTemp = temps.at(-1)?.[2];
  return (
    <figure class="chart">
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label={`Last hour: CPU ${lastCpu ?? '–'} %, temperature ${lastTemp ?? '–'} °C, ${samples.length} samples`}
        preserveAspectRatio="none"
      >
        <line class="grid" x1="0" x2={width} y1={y(50)} y2={y(50)} />
        <polyline class="cpu" points={cpu} fill="none" />
        {temps.length > 0 && <polyline class="temp" points={temp} fill="none" />}
        {samples.length > 0 && (
          <circle class="cpu" cx={x(samples.at(-1)?.[0] ?? now)} cy={y(lastCpu ?? 0)} r="2.5" />
        )}
        {lastTemp !== undefined && (
          <circle class="temp" cx={x(temps.at(-1)?.[0] ?? now)} cy={y(lastTemp)} r="2.5" />
        )}
      </svg>
      <figcaption>
        last hour: <span class="cpu-key">CPU %</span> · <span class="temp-key">°C</span> ({samples.length}{' '}
        samples)
      </figcaption>
    </figure>
  );
}

function Commands({ site, device }: { site: Site; device: DeviceView }) {
  const [result, setResult] = useState('');
  const run = (verb: string, args: Record<string, unknown>, what: string) => {
    setResult(`${what}…`);
    site.command(device.name, verb, args).then(
      (reply) =>
        setResult(
          reply.ok
            ? `${what}: done${verb === 'clip' ? ` (clip ${(reply.result as { clipId?: string } | undefined)?.clipId ?? ''})` : ''}`
            : `${what}: ${reply.error?.message ?? 'refused'}`,
        ),
      (error: unknown) => setResult(`${what}: ${(error as Error).message}`),
    );
  };
  return (
    <div class="commands">
      <button
        type="button"
        onClick={() => run('clip', {}, `Clip from ${device.name}`)}
        disabled={device.status?.state !== 'online'}
      >
        Ask for a clip
      </button>
      {[...device.cameras.keys()].sort().map((camera) => (
        <button
          key={camera}
          type="button"
          class="secondary"
          onClick={() => run('restart-camera', { camera }, `Restart ${camera}`)}
          disabled={device.status?.state !== 'online'}
        >
          Restart {camera}
        </button>
      ))}
      <p class="result" role="status">
        {result}
      </p>
    </div>
  );
}

function Device({ site, device }: { site: Site; device: DeviceView }) {
  const online = device.status?.state === 'online';
  const t = device.telemetry;
  const thresholds = site.session.thresholds;
  return (
    <article
      class={`device ${online ? 'online' : 'offline'}`}
      data-device={device.name}
      aria-labelledby={`device-${device.name}`}
    >
      <header>
        <h2 id={`device-${device.name}`}>{device.name}</h2>
        <span class={`status ${online ? 'online' : 'offline'}`}>
          {device.status ? device.status.state : 'unknown'}
        </span>
        {device.status && (
          <span class="meta">
            {device.status.role} · {device.status.version} · since {formatTime(device.status.at)}
          </span>
        )}
      </header>
      {device.cameras.size > 0 && (
        <ul class="cameras">
          {[...device.cameras.values()]
            .sort((a, b) => a.camera.localeCompare(b.camera))
            .map((camera) => (
              <li key={camera.camera}>
                {camera.camera}: <span class={`state ${camera.state}`}>{camera.state}</span>
                {camera.fps !== null &&
                  ` · ${camera.fps.toFixed(0)} fps · ${Math.round(camera.bitrateKbps ?? 0)} kbit/s`}
                {camera.encoder && ` · ${camera.encoder}`}
                {camera.lastError && camera.state !== 'streaming' && (
                  <span class="problem"> — {camera.lastError}</span>
                )}
              </li>
            ))}
        </ul>
      )}
      {t ? (
        <dl class="telemetry">
          <dt>CPU</dt>
          <dd>{t.cpuLoadPercent.toFixed(0)} %</dd>
          <dt>Temperature</dt>
          <dd class={thresholdState(site, device.name, 'temperature')}>
            {t.temperatureC === null ? 'no sensor' : `${t.temperatureC.toFixed(1)} °C`}{' '}
            <small>(alert at {thresholds.temperatureC.raiseAt} °C)</small>
          </dd>
          <dt>Memory</dt>
          <dd class={thresholdState(site, device.name, 'memory')}>
            {percent(t.memory.usedBytes, t.memory.totalBytes).toFixed(0)} %{' '}
            <small>(alert at {thresholds.memoryPercent.raiseAt} %)</small>
          </dd>
          <dt>Disk</dt>
          <dd class={thresholdState(site, device.name, 'disk')}>
            {percent(t.disk.usedBytes, t.disk.totalBytes).toFixed(0)} %{' '}
            <small>(alert at {thresholds.diskPercent.raiseAt} %)</small>
          </dd>
          <dt>Throttling</dt>
          <dd class={t.throttled && (t.throttled.underVoltage || t.throttled.throttled) ? 'warning' : 'ok'}>
            {t.throttled === null
              ? 'not a Pi'
              : [
                  t.throttled.underVoltage && 'under-voltage',
                  t.throttled.throttled && 'throttled',
                  t.throttled.frequencyCapped && 'frequency capped',
                ]
                  .filter(Boolean)
                  .join(', ') || 'none'}
          </dd>
          <dt>Last report</dt>
          <dd>{device.telemetryAt ? formatTime(device.telemetryAt) : '–'}</dd>
        </dl>
      ) : (
        <p class="empty">No telemetry yet.</p>
      )}
      <Chart samples={device.samples} />
      {site.operator && <Commands site={site} device={device} />}
    </article>
  );
}

export function Devices({ site, title = 'Devices' }: { site: Site; title?: string }) {
  useSite(site);
  useTick(10_000);
  const devices = [...site.devices.values()]
    .filter((device) => device.status || device.telemetry)
    .sort((a, b) => a.name.localeCompare(b.name));
  return (
    <section class="devices" aria-labelledby={`devices-title-${site.name}`}>
      <h1 id={`devices-title-${site.name}`}>{title}</h1>
      {devices.length === 0 ? (
        <p class="empty">No box has reported yet.</p>
      ) : (
        devices.map((device) => <Device key={device.name} site={site} device={device} />)
      )}
    </section>
  );
}
