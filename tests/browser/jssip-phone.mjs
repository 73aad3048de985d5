// JsSIP (the npm package, unmodified) as an agent's phone over the edge's /ws/sip,
// run in Node with the `ws` package as its WebSocket. It registers, reports each
// incoming INVITE and turns it down with 486 (Node has no RTCPeerConnection, so
// it cannot answer: media is the browser tests' part). One JSON line per event on
// stdout; exits 1 on a registration failure.
//
// usage: node jssip-phone.mjs ws://127.0.0.1:PORT/ws/sip AGENT PASSWORD
import WebSocket from 'ws';
import JsSIP from 'jssip';

globalThis.WebSocket = WebSocket;
// JsSIP hands an INVITE to the application only where WebRTC exists (else it
// answers 488 itself). This stand-in lets the INVITE through; it is never
// constructed, since this phone never answers — constructing it fails loudly.
globalThis.window = globalThis;
globalThis.RTCPeerConnection = class {
  constructor() {
    throw new Error('jssip-phone.mjs cannot answer: no WebRTC in Node');
  }
};
const [url, agent, password] = process.argv.slice(2);
const host = new URL(url).host;
const say = (o) => console.log(JSON.stringify(o));

const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(url)],
  uri: `sip:${agent}@${host}`,
  password,
  register: true,
  register_expires: 300,
  session_timers: false,
  user_agent: 'JsSIP (edge interop test)',
});
ua.on('registered', (e) => say({ event: 'registered', status: e.response.status_code }));
ua.on('registrationFailed', (e) => {
  say({ event: 'registrationFailed', cause: e.cause, status: e.response && e.response.status_code });
  process.exit(1);
});
ua.on('newRTCSession', ({ originator, session, request }) => {
  if (originator !== 'remote') return;
  say({
    event: 'invite',
    ruri: request.ruri.toString(),
    from: request.from.uri.toString(),
    sdp: request.body || '',
  });
  session.on('failed', (e) => say({ event: 'failed', cause: e.cause }));
  session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
  say({ event: 'rejected' });
});
process.on('SIGTERM', () => {
  ua.stop();
  setTimeout(() => process.exit(0), 500);
});
ua.start();
