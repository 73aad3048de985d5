// What the browser phone scripts (webrtc-phone.mjs, console-phone.mjs) share:
// Debian's chromium with a fake microphone playing a WAV and loopback ICE, and
// the test's commands read line by line from stdin.
import { chromium } from 'playwright-core';

/// A page in a fresh chromium whose microphone plays `wav` (permission granted).
export async function phoneBrowser(wav) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wav}`,
      // Without it Chromium gathers no 127.0.0.1 candidate.
      '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const ctx = await browser.newContext();
  await ctx.grantPermissions(['microphone']);
  return { browser, page: await ctx.newPage() };
}

/// The test is done (`quit` on stdin): close the browser — which removes the
/// profile directory it made in /tmp; a killed script leaves it behind — and exit.
export async function quit(browser) {
  if (browser) await browser.close().catch(() => {});
  process.exit(0);
}

/// The lines the test writes to stdin, queued as they come.
export function stdinLines() {
  const pending = [];
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    input += d;
    let i;
    while ((i = input.indexOf('\n')) >= 0) {
      pending.push(input.slice(0, i).trim());
      input = input.slice(i + 1);
    }
  });
  return pending;
}
