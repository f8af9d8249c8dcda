/**
 * The console in a real browser (Debian's Chromium, driven by playwright-core) against the real
 * demo gateway (native engine, tiny-shakespeare and its four adapters), with keys configured:
 * the key prompt, a key without admin rights, the adapter table and its tiers, a JIT load seen
 * in the table, the playground streaming `tiny-shakespeare:shout`, and two answers side by side.
 * Skips with the reason when Chromium or playwright-core is missing or the browser cannot start.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import type { RunningServer } from '../../examples/server.ts';
import { startDemo } from '../e2e/server.ts';
import { launchChromium } from './browser.ts';

const ADMIN = 'console-admin-key';
const USER = 'console-user-key';

let server: RunningServer;
let origin = '';
let browser: Browser | undefined;
let closeBrowser = async () => {};
let skip = '';
let page: Page;

/** Upper-case share of the letters of `s`. */
function upperShare(s: string): { share: number; letters: number } {
  const letters = s.match(/\p{L}/gu) ?? [];
  const upper = letters.filter((c) => c !== c.toLowerCase()).length;
  return { share: letters.length ? upper / letters.length : 0, letters: letters.length };
}

/** Skip the test when the browser is not there (the reason says why). */
function needBrowser(t: TestContext): boolean {
  if (skip) t.skip(skip);
  return !skip;
}

describe('console in Chromium', () => {
  before(async () => {
    const b = await launchChromium();
    if ('skip' in b) {
      skip = b.skip;
      console.log(`# console browser tests skipped: ${skip}`);
      return;
    }
    browser = b.browser;
    closeBrowser = b.close;
    server = await startDemo({
      console: true,
      allowRuntimeLoraUpdating: true,
      keys: [
        { name: 'ops', key: ADMIN, admin: true },
        { name: 'app', key: USER },
      ],
    });
    origin = server.url.replace(/\/v1$/, '');
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  after(async () => {
    await closeBrowser();
    await server?.close();
  });

  test('the page loads and asks for a key; a key without admin rights gets 403 and sees no data', async (t) => {
    if (!needBrowser(t)) return;
    const noKey = await fetch(`${origin}/console/api/state`);
    assert.equal(noKey.status, 401);
    const user = await fetch(`${origin}/console/api/state`, { headers: { authorization: `Bearer ${USER}` } });
    assert.equal(user.status, 403);

    const res = await page.goto(`${origin}/console`);
    assert.equal(res?.status(), 200);
    await page.locator('#login').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#app').isVisible(), false);
    await page.fill('#key', USER);
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => /403/.test(document.getElementById('login-why')!.textContent ?? ''));
    assert.equal(await page.locator('#app').isVisible(), false);
    assert.equal(await page.locator('.row').count(), 0, 'no adapter rows without an admin key');
    assert.doesNotMatch(await page.locator('body').innerText(), /whisper|romeo/);
    assert.equal(new URL(page.url()).search, '', 'the key never goes into the URL');
  });

  test('with the admin key the adapter table shows the demo adapters with their tiers', async (t) => {
    if (!needBrowser(t)) return;
    await page.fill('#key', ADMIN);
    await page.click('#login button[type=submit]');
    await page.locator('.row[data-name="whisper"]').waitFor();
    const rows = await page.$$eval('.row:not([hidden])', (els) =>
      els.map((e) => ({ name: (e as HTMLElement).dataset.name, tier: e.querySelector('.c-tier')!.textContent })),
    );
    assert.deepEqual(rows.map((r) => r.name).sort(), ['romeo', 'rs', 'shout', 'whisper']);
    for (const r of rows) assert.ok(['disk', 'host', 'device'].includes(r.tier!), `${r.name}: tier ${r.tier}`);
    assert.equal(await page.locator('#conn').innerText(), 'live');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'no sideways scrolling');
  });

  test('a JIT load moves the adapter to `device` in the table within a second', async (t) => {
    if (!needBrowser(t)) return;
    const tier = () => page.$eval('.row[data-name="whisper"]', (e) => (e as HTMLElement).dataset.tier);
    assert.notEqual(await tier(), 'device', 'whisper is not loaded yet');
    const r = await fetch(`${server.url}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny-shakespeare:whisper', messages: [{ role: 'user', content: 'Speak.' }], max_tokens: 2 }),
    });
    assert.equal(r.status, 200);
    await r.json();
    // The console pushes a tick every 250 ms; the table must show the new tier within 1 s.
    await page.waitForFunction(() => document.querySelector<HTMLElement>('.row[data-name="whisper"]')?.dataset.tier === 'device', null, {
      timeout: 1000,
    });
    assert.equal(await page.$eval('.row[data-name="whisper"] .c-tier', (e) => e.textContent), 'device');
  });

  test('the playground streams a tiny-shakespeare:shout answer in capitals', async (t) => {
    if (!needBrowser(t)) return;
    const pane = page.locator('.pane').first();
    await pane.locator('.p-add').click();
    await pane.locator('.m-name').fill('shout');
    assert.equal(await pane.locator('.p-model').inputValue(), 'tiny-shakespeare:shout');
    // The answer must be a stream: the page asks with `stream: true` and reads an SSE response.
    // (Counting DOM updates is not a test of streaming: on a fast machine the whole answer can
    // arrive in one network read and be drawn once.)
    const streamed = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
    await page.click('#run');
    await pane.locator('.out[data-state="done"]').waitFor({ timeout: 60_000 });
    const text = await pane.locator('.out').innerText();
    const u = upperShare(text);
    assert.ok(u.letters >= 20, `only ${u.letters} letters: ${JSON.stringify(text)}`);
    assert.ok(u.share >= 0.8, `upper-case share ${u.share.toFixed(2)}: ${JSON.stringify(text)}`);
    const res = await streamed;
    assert.equal(JSON.parse(res.request().postData() ?? '{}').stream, true);
    assert.match(res.headers()['content-type'] ?? '', /^text\/event-stream/);
  });

  test('side by side: two model strings, one prompt, two different answers', async (t) => {
    if (!needBrowser(t)) return;
    await page.check('#compare');
    const b = page.locator('.pane').nth(1);
    await b.waitFor({ state: 'visible' });
    await b.locator('.p-add').click();
    await b.locator('.m-name').fill('whisper');
    assert.equal(await b.locator('.p-model').inputValue(), 'tiny-shakespeare:whisper');
    await page.click('#run');
    const outs = page.locator('.pane .out');
    await page.locator('.pane .out[data-state="done"]').nth(1).waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => [...document.querySelectorAll<HTMLElement>('.pane .out')].every((o) => o.dataset.state === 'done'));
    const [left, right] = [await outs.nth(0).innerText(), await outs.nth(1).innerText()];
    assert.ok(left.length > 0 && right.length > 0);
    assert.notEqual(left, right);
    assert.ok(upperShare(left).share >= 0.8, `left (shout): ${JSON.stringify(left)}`);
    assert.ok(upperShare(right).share <= 0.2, `right (whisper): ${JSON.stringify(right)}`);
  });

  test('compositions: a materialised ties merge and an ensemble of two adapters answer in the playground', async (t) => {
    if (!needBrowser(t)) return;
    await page.uncheck('#compare');
    const a = page.locator('.pane').first();
    await a.locator('.m-name').first().fill('whisper'); // ties needs equal ranks: whisper and romeo are rank 8
    await a.locator('.m-weight').first().fill('0.5');
    await a.locator('.p-add').click();
    await a.locator('.m-name').nth(1).fill('romeo');
    await a.locator('.m-weight').nth(1).fill('0.5');
    assert.equal(await a.locator('.p-model').inputValue(), 'tiny-shakespeare:whisper@0.5+romeo@0.5');
    for (const strategy of ['ties', 'ensemble']) {
      await a.locator('.p-strategy').selectOption(strategy);
      await page.click('#run');
      await a.locator('.out[data-state="done"], .out[data-state="error"]').waitFor({ timeout: 60_000 });
      assert.equal(await a.locator('.out').getAttribute('data-state'), 'done', `${strategy}: ${await a.locator('.out').innerText()}`);
      assert.ok((await a.locator('.out').innerText()).length > 0, strategy);
    }
  });

  test('on a phone-sized screen the page has no sideways scrolling', async (t) => {
    if (!needBrowser(t)) return;
    await page.setViewportSize({ width: 375, height: 740 });
    await page.waitForTimeout(300); // let the charts' ResizeObserver run
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0);
  });
});
