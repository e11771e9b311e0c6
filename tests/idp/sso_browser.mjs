// A person logging in to Weft with SSO, in a real browser: Chromium, headless,
// driven by puppeteer-core. Run by host/tests/sso_browser.rs:
//
//   WEFT_IDP_NODE_MODULES=<dir>/node_modules node tests/idp/sso_browser.mjs \
//     --chromium /usr/bin/chromium --base http://127.0.0.1:8008 --idp oidc-basic \
//     --client-port 9000 --user alice --password wonderland --username wonder
//
// It serves "the client" on 127.0.0.1:<client-port> (a page that shows the URL
// it was opened with), opens Weft's SSO redirect with redirectUrl pointing
// there, signs in at the provider's form, picks `--username` on Weft's
// username page (waiting for the live availability check to say it is free),
// and waits to land on the client. Then, in a fresh browser context (no
// provider session), the same person logs in again and must land on the
// client straight away. It prints one JSON line:
// {"first": <client URL with loginToken>, "returning": <...>, "picker": <the
// picker's status text>} and exits 0, or prints the failure and exits 1.

import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(`--${name}`);
  if (at < 0) throw new Error(`--${name} is required`);
  return args[at + 1];
};
const modules = process.env.WEFT_IDP_NODE_MODULES;
const resolve = createRequire(join(modules, 'package.json')).resolve;
const { default: puppeteer } = await import(pathToFileURL(resolve('puppeteer-core')).href);

const base = option('base');
const clientPort = Number(option('client-port'));
const clientUrl = `http://127.0.0.1:${clientPort}/app`;
const redirect = `${base}/_matrix/client/v3/login/sso/redirect/${encodeURIComponent(option('idp'))}?redirectUrl=${encodeURIComponent(clientUrl)}`;
const TIMEOUT = 30_000;

const client = createServer((req, res) => {
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end('<!doctype html><html lang="en"><title>The client</title><h1>Logged in</h1></html>');
});
await new Promise((ready) => client.listen(clientPort, '127.0.0.1', ready));

const browser = await puppeteer.launch({
  executablePath: option('chromium'),
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--no-first-run', '--no-default-browser-check'],
});

/** Signs in at the provider's login form the page is on. */
async function signIn(page) {
  await page.waitForSelector('input[name="username"]', { timeout: TIMEOUT });
  await page.type('input[name="username"]', option('user'));
  await page.type('input[name="password"]', option('password'));
  await Promise.all([page.waitForNavigation({ timeout: TIMEOUT }), page.click('button[type="submit"]')]);
}

/** Waits until the page is the client's, and returns its URL. */
async function landedOnClient(page) {
  await page.waitForFunction((prefix) => location.href.startsWith(prefix), { timeout: TIMEOUT }, clientUrl);
  return page.url();
}

let exitCode = 0;
try {
  const page = await browser.newPage();
  await page.goto(redirect, { timeout: TIMEOUT });
  await signIn(page);

  // Weft's username picker.
  await page.waitForSelector('#username', { timeout: TIMEOUT });
  if (!new URL(page.url()).pathname.endsWith('/_synapse/client/pick_username/account_details')) {
    throw new Error(`expected Weft's username picker, got ${page.url()}`);
  }
  const suggested = await page.$eval('#username', (input) => input.value);
  await page.$eval('#username', (input) => { input.value = ''; });
  await page.type('#username', option('username'));
  await page.waitForFunction(() => document.getElementById('username-status').textContent.includes('available'), { timeout: TIMEOUT });
  const picker = await page.$eval('#username-status', (status) => status.textContent);
  await Promise.all([page.waitForNavigation({ timeout: TIMEOUT }), page.click('button[type="submit"]')]);
  const first = await landedOnClient(page);

  // Returning, in a fresh context: the provider's form again, then straight to the client.
  const context = await browser.createBrowserContext();
  const again = await context.newPage();
  await again.goto(redirect, { timeout: TIMEOUT });
  await signIn(again);
  const returning = await landedOnClient(again);
  process.stdout.write(`${JSON.stringify({ first, returning, picker, suggested })}\n`);
} catch (error) {
  console.error(`the browser login failed: ${error.stack || error}`);
  exitCode = 1;
} finally {
  await browser.close();
  client.close();
}
process.exit(exitCode);
