// An agent in Debian's chromium (headless, playwright-core) answering a queue call
// with JsSIP (the npm package, bundled here with esbuild for the page) over the
// edge's /ws/sip, with WebRTC media: the fake microphone plays AGENT_WAV, and the
// page listens to the remote stream with WebAudio until it hears EXPECT_HZ.
//
// usage: node webrtc-agent.mjs ws://127.0.0.1:PORT/ws/sip AGENT PASSWORD AGENT_WAV EXPECT_HZ
//
// One JSON line per event on stdout: registered, incoming, confirmed, heard
// {hz}, ended; `fail` {why} and exit 1 on the first thing that does not happen.
// The page is served from a loopback server of its own (Chromium blocks a page
// that is not local from opening a WebSocket to 127.0.0.1).
import { chromium } from 'playwright-core';
import * as esbuild from 'esbuild';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [wsUrl, agent, password, wav, expectHz] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const say = (o) => console.log(JSON.stringify(o));
let browser;
const fail = async (why) => {
  say({ event: 'fail', why });
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
};
setTimeout(() => fail('timed out (90 s)'), 90000).unref();

const bundle = await esbuild.build({
  stdin: { contents: 'window.JsSIP = require("jssip");', resolveDir: here },
  bundle: true,
  write: false,
  format: 'iife',
  logLevel: 'silent',
});
const jssip = bundle.outputFiles[0].text;

// The page: registers, answers the first call with audio, and measures the
// loudest frequency of the remote stream (300-3400 Hz) every 100 ms.
const page = `<!doctype html><meta charset="utf-8"><title>agent</title>
<audio id="remote" autoplay muted></audio>
<script src="/jssip.js"></script>
<script>
const q = new URLSearchParams(location.search);
window.events = [];
const ev = (e) => window.events.push(e);
const host = new URL(q.get('ws')).host;
const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(q.get('ws'))],
  uri: 'sip:' + q.get('agent') + '@' + host,
  password: q.get('password'),
  register: true,
  session_timers: false,
});
ua.on('registered', () => ev({ event: 'registered' }));
ua.on('registrationFailed', (e) => ev({ event: 'fail', why: 'registration: ' + e.cause }));
ua.on('newRTCSession', ({ originator, session, request }) => {
  if (originator !== 'remote') return;
  ev({ event: 'incoming', from: request.from.uri.toString() });
  session.on('confirmed', () => {
    ev({ event: 'confirmed' });
    const pc = session.connection;
    const track = pc.getReceivers().map((r) => r.track).find((t) => t && t.kind === 'audio');
    if (!track) return ev({ event: 'fail', why: 'no remote audio track' });
    const stream = new MediaStream([track]);
    // WebAudio gets silence from a remote track unless an element plays it too.
    document.getElementById('remote').srcObject = stream;
    const ctx = new AudioContext();
    const an = ctx.createAnalyser();
    an.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    setInterval(() => {
      an.getFloatFrequencyData(bins);
      const hzPerBin = ctx.sampleRate / an.fftSize;
      let best = -1, bestDb = -Infinity;
      for (let i = Math.floor(300 / hzPerBin); i < 3400 / hzPerBin; i++) {
        if (bins[i] > bestDb) { bestDb = bins[i]; best = i; }
      }
      window.peak = { hz: best * hzPerBin, db: bestDb, ice: pc.iceConnectionState, conn: pc.connectionState };
    }, 100);
  });
  session.on('ended', (e) => ev({ event: 'ended', cause: e.cause }));
  session.on('failed', (e) => ev({ event: 'fail', why: 'session failed: ' + e.cause }));
  session.answer({ mediaConstraints: { audio: true, video: false } });
});
ua.start();
</script>`;

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/jssip.js')) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    return res.end(jssip);
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(page);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
server.unref();
const base = `http://127.0.0.1:${server.address().port}/`;

browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`,
    '--allow-loopback-in-peer-connection',
    '--autoplay-policy=no-user-gesture-required',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const ctx = await browser.newContext();
await ctx.grantPermissions(['microphone']);
const tab = await ctx.newPage();
tab.on('pageerror', (e) => fail('page error: ' + e.message));
const qs = new URLSearchParams({ ws: wsUrl, agent, password });
await tab.goto(base + '?' + qs);

const seen = new Set();
let heardSince = 0;
let lastPeak = null;
for (;;) {
  const { events, peak } = await tab.evaluate(() => ({ events: window.events.splice(0), peak: window.peak }));
  for (const e of events) {
    if (e.event === 'fail') await fail(e.why);
    seen.add(e.event);
    say(e);
    if (e.event === 'ended') {
      await browser.close();
      process.exit(0);
    }
  }
  if (peak) lastPeak = peak;
  // The customer's tone, steady for half a second.
  if (peak && !seen.has('heard')) {
    if (Math.abs(peak.hz - Number(expectHz)) < 25 && peak.db > -80) {
      if (!heardSince) heardSince = Date.now();
      if (Date.now() - heardSince >= 500) {
        seen.add('heard');
        say({ event: 'heard', hz: Math.round(peak.hz), db: Math.round(peak.db), ice: peak.ice });
      }
    } else {
      heardSince = 0;
    }
  }
  if (seen.has('confirmed') && !seen.has('heard') && lastPeak && lastPeak.conn === 'failed') {
    await fail('peer connection failed: ' + JSON.stringify(lastPeak));
  }
  await new Promise((ok) => setTimeout(ok, 100));
}
