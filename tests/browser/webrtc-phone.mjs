// A phone in Debian's chromium (headless, playwright-core): JsSIP (the npm
// package, bundled here with esbuild for the page) over the edge's /ws/sip with
// WebRTC media. It registers, answers every call with its fake microphone playing
// WAV, and measures the remote audio with WebAudio.
//
// usage: node webrtc-phone.mjs WS_URL USER PASSWORD WAV HZ[,HZ...] [NUMBER]
//   WS_URL may carry ?token=… (the console's sign-in: no SIP password, give "-").
//   NUMBER: once registered, call it (the browser is the offerer).
// Commands on stdin, one per line, act on the call in progress: `hold`,
// `unhold`, `dtmf DIGITS` (RFC 4733 in the media), `hangup`, `stats` (the
// `done` line then carries the inbound RTP streams from getStats: ssrc,
// packetsReceived, packetsLost).
//
// One JSON line per event on stdout: registered, incoming {from} or calling,
// confirmed,
// levels {levels: {HZ: dB}} every 250 ms while a call is up (the loudest of the
// FFT bins within 12 Hz of each HZ, -200 for silence), ended; `fail` {why} and
// exit 1 on the first thing that does not happen. The page comes from a loopback
// server of its own (Chromium blocks a page that is not local from opening a
// WebSocket to 127.0.0.1).
import { phoneBrowser, quit, stdinLines } from './phone-common.mjs';
import * as esbuild from 'esbuild';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [wsUrl, user, password, wav, hzList, dial] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const say = (o) => console.log(JSON.stringify(o));
let browser;
const fail = async (why) => {
  say({ event: 'fail', why });
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
};
setTimeout(() => fail('timed out (120 s)'), 120000).unref();

const bundle = await esbuild.build({
  stdin: { contents: 'window.JsSIP = require("jssip");', resolveDir: here },
  bundle: true,
  write: false,
  format: 'iife',
  logLevel: 'silent',
});
const jssip = bundle.outputFiles[0].text;

const page = `<!doctype html><meta charset="utf-8"><title>phone</title>
<audio id="remote" autoplay muted></audio>
<script src="/jssip.js"></script>
<script>
const q = new URLSearchParams(location.search);
window.events = [];
const ev = (e) => window.events.push(e);
const ws = q.get('ws');
const host = new URL(ws).host;
const hz = q.get('hz').split(',').map(Number);
const conf = {
  sockets: [new JsSIP.WebSocketInterface(ws)],
  uri: 'sip:' + q.get('user') + '@' + host,
  register: true,
  session_timers: false,
};
if (q.get('password') !== '-') conf.password = q.get('password');
const ua = new JsSIP.UA(conf);
const media = { mediaConstraints: { audio: true, video: false } };
ua.on('registered', () => {
  ev({ event: 'registered' });
  if (q.get('dial') && !window.dialled) {
    window.dialled = true;
    ev({ event: 'calling' });
    ua.call('sip:' + q.get('dial') + '@' + host, media);
  }
});
ua.on('registrationFailed', (e) => ev({ event: 'fail', why: 'registration: ' + e.cause }));
window.command = (line) => {
  const s = window.session;
  if (!s) return ev({ event: 'fail', why: 'no call for command ' + line });
  const [verb, arg] = line.split(' ');
  if (verb === 'hold') s.hold();
  else if (verb === 'unhold') s.unhold();
  else if (verb === 'dtmf') s.sendDTMF(arg, { transportType: 'RFC2833', duration: 160, interToneGap: 100 });
  else if (verb === 'hangup') s.terminate();
  else if (verb === 'stats') {
    return s.connection.getStats().then((r) => {
      const inbound = [];
      r.forEach((x) => {
        if (x.type === 'inbound-rtp' && x.kind === 'audio') {
          inbound.push({ ssrc: x.ssrc, packetsReceived: x.packetsReceived, packetsLost: x.packetsLost });
        }
      });
      ev({ event: 'done', command: line, inbound });
    });
  } else return ev({ event: 'fail', why: 'unknown command ' + line });
  ev({ event: 'done', command: line });
};
ua.on('newRTCSession', ({ originator, session, request }) => {
  window.session = session;
  if (originator === 'remote') ev({ event: 'incoming', from: request.from.uri.toString() });
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
    an.smoothingTimeConstant = 0;
    ctx.createMediaStreamSource(stream).connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    const timer = setInterval(() => {
      an.getFloatFrequencyData(bins);
      const per = ctx.sampleRate / an.fftSize;
      const levels = {};
      for (const f of hz) {
        let best = -200;
        for (let i = Math.ceil((f - 12) / per); i <= Math.floor((f + 12) / per); i++) {
          if (Number.isFinite(bins[i]) && bins[i] > best) best = bins[i];
        }
        levels[f] = Math.round(best);
      }
      ev({ event: 'levels', levels, ice: pc.iceConnectionState, conn: pc.connectionState });
    }, 250);
    session.on('ended', () => clearInterval(timer));
  });
  session.on('ended', (e) => ev({ event: 'ended', cause: e.cause }));
  session.on('failed', (e) => ev({ event: 'fail', why: 'session failed: ' + e.cause }));
  if (originator === 'remote') session.answer(media);
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

const opened = await phoneBrowser(wav);
browser = opened.browser;
const tab = opened.page;
tab.on('pageerror', (e) => fail('page error: ' + e.message));
const qs = new URLSearchParams({ ws: wsUrl, user, password, hz: hzList, dial: dial || '' });
await tab.goto(base + '?' + qs);

// Commands from the test, as they come.
const pending = stdinLines();
// Events stream on; the browser ends when the test kills this process.
for (;;) {
  while (pending.length) {
    const line = pending.shift();
    if (line === 'quit') await quit(browser);
    if (line) await tab.evaluate((l) => window.command(l), line);
  }
  const events = await tab.evaluate(() => window.events.splice(0));
  for (const e of events) {
    if (e.event === 'fail') await fail(e.why);
    if (e.event === 'levels' && e.conn === 'failed') await fail('peer connection failed');
    say(e);
  }
  await new Promise((ok) => setTimeout(ok, 100));
}
