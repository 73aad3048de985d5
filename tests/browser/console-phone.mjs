// The edge's own /console softphone in Debian's chromium (headless,
// playwright-core): signs in with a token, and reports what the page shows, one
// JSON line per event on stdout (the same lines as webrtc-phone.mjs, so the Rust
// test drives both alike): registered, incoming {who, data}, data {data} (the
// incoming call's reserved data, at each change), confirmed, levels
// {levels: {HZ: dB}} every 250 ms while a call is up (WebAudio on the page's
// remote <audio>), ended; `fail` {why} and exit 1 on the first problem.
//
// usage: node console-phone.mjs http://127.0.0.1:PORT TOKEN WAV HZ[,HZ...]
// Commands on stdin (they click the page's buttons): answer, hangup, hold,
// unhold, mute, dtmf D, listen, whisper, barge (on the first live call),
// state STATE [REASON], dial NUMBER, cancel (an outgoing call not yet
// answered), transfer TARGET, consult TARGET, complete, back (end the
// consultation), conference TARGET.
import { phoneBrowser, quit, stdinLines } from './phone-common.mjs';

const [base, token, wav, hzList] = process.argv.slice(2);
const say = (o) => console.log(JSON.stringify(o));
let browser;
const fail = async (why) => {
  say({ event: 'fail', why });
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
};
setTimeout(() => fail('timed out (120 s)'), 120000).unref();

const opened = await phoneBrowser(wav);
browser = opened.browser;
const page = opened.page;
page.on('pageerror', (e) => fail('page error: ' + e.message));
await page.goto(base + '/console');
await page.fill('#token', token);
await page.click('#connect');
await page.waitForSelector('#app:not(.hidden)', { timeout: 10000 });

// WebAudio on the remote <audio> element's stream, as the page plays it.
await page.evaluate((hz) => {
  window.levels = null;
  window.hz = hz.split(',').map(Number);
  setInterval(() => {
    const el = document.getElementById('remote-audio');
    const stream = el && el.srcObject;
    if (!stream) { window.levels = null; window.an = null; return; }
    if (!window.an || window.anStream !== stream) {
      const ac = new AudioContext();
      window.an = ac.createAnalyser();
      window.an.fftSize = 8192;
      window.an.smoothingTimeConstant = 0;
      ac.createMediaStreamSource(stream).connect(window.an);
      window.anStream = stream;
      window.acRate = ac.sampleRate;
    }
    const bins = new Float32Array(window.an.frequencyBinCount);
    window.an.getFloatFrequencyData(bins);
    const per = window.acRate / window.an.fftSize;
    const levels = {};
    for (const f of window.hz) {
      let best = -200;
      for (let i = Math.ceil((f - 12) / per); i <= Math.floor((f + 12) / per); i++) {
        if (Number.isFinite(bins[i]) && bins[i] > best) best = bins[i];
      }
      levels[f] = Math.round(best);
    }
    window.levels = levels;
  }, 250);
}, hzList);

const pending = stdinLines();

async function command(line) {
  const [verb, ...args] = line.split(' ');
  const click = (sel) => page.click(sel, { timeout: 10000 });
  if (verb === 'answer') await click('#answer');
  else if (verb === 'hangup') await click('#hangup');
  else if (verb === 'hold' || verb === 'unhold') await click('#hold');
  else if (verb === 'mute') await click('#mute');
  else if (verb === 'dtmf') await click(`#keypad button[data-digit="${args[0]}"]`);
  else if (['listen', 'whisper', 'barge'].includes(verb)) await click(`#live-calls tr button.${verb}`);
  else if (verb === 'dial') {
    await page.fill('#dial-to', args[0]);
    await click('#dial');
  } else if (verb === 'cancel') await click('#cancel-call');
  else if (['transfer', 'consult', 'conference'].includes(verb)) {
    await page.fill('#move-to', args[0]);
    await click(`#${verb}`);
  } else if (verb === 'complete') await click('#consult-complete');
  else if (verb === 'back') await click('#consult-cancel');
  else if (verb === 'state') {
    if (args[1]) await page.fill('#state-reason', args.slice(1).join(' '));
    await page.selectOption('#agent-state', args[0]);
  } else await fail('unknown command ' + line);
  say({ event: 'done', command: line });
}

const seen = { registered: false, incoming: false, inCall: false, data: '', status: '' };
let last = 0;
for (;;) {
  while (pending.length) {
    const line = pending.shift();
    if (line === 'quit') await quit(browser);
    if (line) await command(line);
  }
  const st = await page.evaluate(() => ({
    phone: document.getElementById('phone-state').textContent,
    incoming: !document.getElementById('incoming').classList.contains('hidden'),
    who: document.getElementById('incoming-who').textContent,
    data: document.getElementById('incoming-data').textContent,
    inCall: !document.getElementById('in-call').classList.contains('hidden'),
    levels: window.levels,
    status: document.getElementById('status').textContent,
    callEntry: (document.getElementById('call-tab') || {}).textContent || '',
  }));
  if (!seen.registered && st.phone.startsWith('registered')) { seen.registered = true; say({ event: 'registered' }); }
  if (st.incoming && !seen.incoming) say({ event: 'incoming', who: st.who, data: st.data });
  seen.incoming = st.incoming;
  // The reserved data: first from the INVITE's X-Edge-* headers, then exactly as
  // the console's own socket names it (each change is reported).
  if (st.incoming && st.data && st.data !== seen.data) { seen.data = st.data; say({ event: 'data', data: st.data }); }
  if (st.inCall && !seen.inCall) say({ event: 'confirmed', entry: st.callEntry });
  if (!st.inCall && seen.inCall) say({ event: 'ended', phone: st.phone });
  seen.inCall = st.inCall;
  if (st.inCall && st.levels && Date.now() - last >= 250) { last = Date.now(); say({ event: 'levels', levels: st.levels }); }
  // The page's status line, at each change (errors of commands included).
  if (st.status !== seen.status) { seen.status = st.status; if (st.status) say({ event: 'status', text: st.status }); }
  await new Promise((ok) => setTimeout(ok, 100));
}
