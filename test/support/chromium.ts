// Headless Chromium for the viewer tests and bench:latency: Debian's chromium (or $CHROMIUM) through
// playwright-core, with a fresh profile, nothing that phones home, and WebRTC allowed on loopback.
import { chromium, type Browser, type BrowserContext } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Launch it with its profile in `profileDir` (a fresh folder). */
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

export function headlessChromium(profileDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
  });
}

/**
 * A browser for several contexts at once (a console and a staff member side by side), each a fresh
 * profile. `trustSpki`: base64 SHA-256 public keys of server certificates to accept without a CA
 * (the test site's hub certificate), instead of ignoring every certificate error.
 */
export function headlessBrowser(trustSpki: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      ...ARGS,
      ...(trustSpki.length > 0 ? [`--ignore-certificate-errors-spki-list=${trustSpki.join(',')}`] : []),
    ],
  });
}
