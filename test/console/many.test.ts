/**
 * The adapter table with 5,000 adapters in Chromium (fake engine, console open mode): only the
 * rows in view are in the DOM, and filtering and sorting act on all of them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import express from 'express';
import type { AdapterInfo } from '../../adapters/types.ts';
import { openLora } from '../../plugin/index.ts';
import { listen } from '../gateway/helpers.ts';
import { demoTokenizer, FakeAdapters, ScriptedEngine } from '../plugin/fakes.ts';
import { launchChromium } from './browser.ts';

const N = 5000;
const TIERS = ['device', 'host', 'disk'] as const;

test(`the adapter table draws only the rows in view of ${N} and filters and sorts them all`, async (t) => {
  const b = await launchChromium();
  if ('skip' in b) return t.skip(b.skip);
  const infos: AdapterInfo[] = Array.from({ length: N }, (_, i) => ({
    name: `ad-${String(i).padStart(4, '0')}`,
    base: 'tiny',
    dir: `/adapters/${i}`,
    rank: 1 + (i % 64),
    alpha: 16,
    useRslora: false,
    targetModules: ['q_proj'],
    created: 1700000000,
    tier: TIERS[i % 3],
    slot: i % 3 === 0 ? i % 64 : null,
    served: (i * 7919) % N,
    pins: 0,
    bytes: 1024 * (i + 1),
    lastUsedAt: 0,
  }));
  const router = openLora({
    console: true,
    models: [{ name: 'tiny', engine: new ScriptedEngine(() => [1]).asEngine(), tokenizer: await demoTokenizer(), adapters: new FakeAdapters('tiny', infos) }],
  });
  const app = express();
  app.use(router);
  await router.ready;
  const l = await listen(app);
  try {
    const page = await b.browser.newPage({ viewport: { width: 1280, height: 900 } });
    await page.goto(`${l.url}/console`);
    await page.locator('.row[data-name]').first().waitFor();
    assert.equal(await page.locator('#count').innerText(), String(N));
    const inDom = await page.locator('.row').count();
    assert.ok(inDom < 60, `${inDom} row elements for ${N} adapters`);

    // Default order: device first.
    assert.equal(await page.locator('.row').first().getAttribute('data-tier'), 'device');
    // Sort by requests served, most first: the adapter with served = N - 1.
    await page.click('.head [data-key="served"]');
    const top = infos.reduce((a, x) => (x.served! > a.served! ? x : a));
    await page.waitForFunction((name) => document.querySelector<HTMLElement>('.row:not([hidden])')?.dataset.name === name, top.name);
    // Filter by name and by tier.
    await page.fill('#filter', 'ad-4999');
    await page.waitForFunction(() => document.querySelectorAll('.row:not([hidden])').length === 1);
    assert.equal(await page.locator('.row:not([hidden])').getAttribute('data-name'), 'ad-4999');
    await page.fill('#filter', '');
    await page.selectOption('#tier-filter', 'host');
    // Scroll to the end: the last host adapter by the current sort is drawn, and still few rows exist.
    await page.locator('#table').evaluate((el) => (el.scrollTop = el.scrollHeight));
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLElement>('.row:not([hidden])')].every((r) => r.dataset.tier === 'host'));
    const hosts = infos.filter((x) => x.tier === 'host').sort((a, c) => a.served! - c.served!);
    await page.waitForFunction((name) => !!document.querySelector(`.row[data-name="${name}"]:not([hidden])`), hosts[0]!.name);
    assert.ok((await page.locator('.row').count()) < 60);
  } finally {
    await b.close();
    await router.close();
    await l.close();
  }
});
