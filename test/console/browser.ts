/**
 * Test helper: Debian's Chromium driven by playwright-core (both installed by .ci/run), or the
 * reason it cannot start, so a test can skip with a clear message instead of failing.
 */
import { existsSync } from 'node:fs';
import type { Browser } from 'playwright-core';

/** Where Debian's `chromium` package puts the browser (override: OPENLORA_CHROMIUM). */
export const CHROMIUM = process.env.OPENLORA_CHROMIUM || '/usr/bin/chromium';

/**
 * Flags that start Chromium headless as root on a machine without outside network: no sandbox
 * (root), no GPU, and none of the background connections (updates, sync, QUIC) that a closed
 * network refuses. playwright gives every launch a new empty profile folder (and removes it).
 */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** A started browser, or `{skip}` saying why not. */
export async function launchChromium(): Promise<{ browser: Browser; close(): Promise<void> } | { skip: string }> {
  if (!existsSync(CHROMIUM)) return { skip: `no Chromium at ${CHROMIUM} (apt-get install chromium; .ci/run does)` };
  let chromium: typeof import('playwright-core').chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (err) {
    return { skip: `playwright-core is not installed: ${(err as Error).message}` };
  }
  try {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 60_000 });
    return { browser, close: () => browser.close() };
  } catch (err) {
    return { skip: `Chromium at ${CHROMIUM} did not start: ${(err as Error).message.split('\n')[0]}` };
  }
}
