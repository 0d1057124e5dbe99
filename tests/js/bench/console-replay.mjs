// How fast the web console shows a long session: opened for the first time
// (every event replayed by the server over Socket.IO and rendered), then
// reloaded (rendered from the browser's IndexedDB copy, nothing replayed).
// Prints numbers; asserts nothing about speed.
//
//   cargo build --release
//   cd tests/js && SWITCHBOARD_BIN=../../target/release/switchboard \
//     node bench/console-replay.mjs [EVENTS=20000]
//
// Needs Debian's Chromium at /usr/bin/chromium (or CHROMIUM_PATH).

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { httpApi, startServer } from '../helpers.mjs';

const EVENTS = Number(process.argv[2] ?? 20_000);
const TOKEN = 'tok-bench';

// The benchmark loads a long session as fast as it can: lift the per-user
// ingest rates (README, "Limits") that a real producer would stay under.
const server = await startServer({
  env: {
    SWITCHBOARD_API_TOKENS: `bench:${TOKEN}`,
    SWITCHBOARD_INGEST_RATE: 'unlimited',
    SWITCHBOARD_INGEST_BYTES_RATE: 'unlimited',
  },
});
const profile = await mkdtemp(join(tmpdir(), 'switchboard-bench-chromium-'));
try {
  const api = httpApi(server, TOKEN);
  const session = await api.createSession({ title: 'Replay bench' });
  // A build log: terminal lines with colours, and a progress event every 100.
  const events = Array.from({ length: EVENTS }, (_, i) =>
    i % 100 === 99
      ? { type: 'progress', data: { passing: i + 1, total: EVENTS, message: 'lines' } }
      : { type: 'output', data: { stream: 'stdout', data: `\u001b[32mok\u001b[0m line ${i + 1} of the build log\n` } },
  );
  await api.appendInBatches(session.id, events, 1000);

  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const lastRendered = () =>
    page.waitForFunction((n) => !!document.querySelector(`ol.events > li[data-seq="${n}"]`), EVENTS, { timeout: 600_000, polling: 50 });

  // Sign in first, so that only the session's own loading is timed.
  await page.goto(`${server.url}/#token=${TOKEN}`);
  await page.getByRole('heading', { name: 'Sessions' }).waitFor();

  let start = performance.now();
  await page.evaluate((id) => (location.hash = `#/s/${id}`), session.id);
  await lastRendered();
  const fromServer = performance.now() - start;

  // Let the IndexedDB writes (batched every 100 ms) finish.
  const stored = () =>
    page.evaluate(async () => {
      const db = await new Promise((resolve, reject) => {
        const open = indexedDB.open('switchboard-console');
        open.onsuccess = () => resolve(open.result);
        open.onerror = () => reject(open.error);
      });
      const count = await new Promise((resolve) => (db.transaction('events').objectStore('events').count().onsuccess = (e) => resolve(e.target.result)));
      db.close();
      return count;
    });
  while ((await stored()) < EVENTS) await new Promise((resolve) => setTimeout(resolve, 100));

  start = performance.now();
  await page.reload();
  await lastRendered();
  const fromCache = performance.now() - start;
  const nodes = await page.evaluate(() => document.getElementsByTagName('*').length);
  await context.close();

  const rate = (ms) => Math.round(EVENTS / (ms / 1000)).toLocaleString('en');
  console.log(`events in the session:          ${EVENTS.toLocaleString('en')}`);
  console.log(`first open (server replay):     ${(fromServer / 1000).toFixed(2)} s  (${rate(fromServer)} events/s)`);
  console.log(`reload (IndexedDB, no replay):  ${(fromCache / 1000).toFixed(2)} s  (${rate(fromCache)} events/s, page load included)`);
  console.log(`DOM elements on the page:       ${nodes.toLocaleString('en')}`);
} finally {
  await server.stop();
  await rm(profile, { recursive: true, force: true });
}
