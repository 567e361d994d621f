// Meridian drop-in loader.
//
//   <script type="module" src="https://verifier.example/pkg/meridian.js"
//           data-action="login"></script>
//   <form data-meridian> … </form>
//
// Before a marked form submits, it takes a fresh challenge (through the
// verifier's echo, which seals the round trips it timed; a plain fetch
// when that cannot run), collects the browser's signals, and puts the
// signed token into the form's <input type="hidden" name="meridian-token">
// (created when missing), so a page left open for hours still submits a
// live token. If the verifier is
// unreachable or WebAssembly cannot run, the form submits anyway with a
// `meridian-error:<kind>` marker the verifier reports as `collector-error`.
//
// Script attributes (all optional): data-action (default "login"),
// data-challenge-url (default: /v1/challenge on the script's origin),
// data-forms (a CSS selector, default "form[data-meridian]"), data-signer
// ("wasm": sign with the module's own Ed25519 even where the browser has
// one). A form's own data-meridian="<action>" and
// data-meridian-challenge-url win.
// Single-page apps call `collect()` themselves.
// scripts/build-collector puts the glue itself in place of this import, and
// the key id of the key the module embeds, as text, in place of
// the call of embeddedKeyId below: the page downloads one script.
import init, { Session, keyId as embeddedKeyId } from './meridian_collector.js';

const here = new URL(import.meta.url);
/** Resolves when the WebAssembly module is loaded and started. */
export const ready = init({ module_or_path: new URL('meridian_collector_bg.wasm', here) });
// Callers see a failure through collect(); an unloaded module is not an
// unhandled rejection of the page.
let loaded = false;
ready.then(() => { loaded = true; }, () => {});

/** The <script> element that loaded this module, if any. */
const script =
  typeof document === 'undefined'
    ? null
    : [...document.querySelectorAll('script[type="module"][src]')].find((s) => s.src === here.href) || null;
const settings = (script && script.dataset) || {};

/** Default challenge endpoint: the script tag's, or the verifier that serves this script. */
export const defaultChallengeUrl = settings.challengeUrl || new URL('/v1/challenge', here).href;

// The collector's own session: a fresh realm (a hidden frame), a Worker and
// the signing key, made once when the browser is idle after load (or by the
// first collect()), so the first collection does not pay for them. The
// session measures the challenge round trip, the clock, the Worker's view
// and the integrity of the page's functions itself; this script only
// fetches. It signs with the browser's own Ed25519; a browser without it
// gets the module with Ed25519 compiled in, fetched only then (and always
// with data-signer="wasm").
let session = null;
function currentSession() {
  if (session === null) {
    session = openSession();
    session.catch(() => { session = null; });
  }
  return session;
}
async function openSession() {
  await ready;
  if (settings.signer !== 'wasm') {
    const current = new Session();
    try {
      if (await current.signer()) return current;
    } catch {}
    current.free();
  }
  const fallback = await import('./meridian_collector_fallback.js');
  await fallback.default({ module_or_path: new URL('meridian_collector_fallback_bg.wasm', here) });
  return new fallback.Session();
}
if (typeof document !== 'undefined') {
  ready.then(() => (typeof requestIdleCallback === 'function' ? requestIdleCallback : setTimeout)(currentSession), () => {});
}

/** RFC 4648 base64url without padding. */
const base64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');

/** Waits up to `ms` for the session's Worker to report. */
async function workerAnswer(current, ms) {
  const until = performance.now() + ms;
  while (!current.workerAnswered() && performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Fetches a challenge: plain (`GET /v1/challenge`), or with `echo` through
 * the echo over plain requests (`POST /v1/echo`, for networks that let no
 * WebSocket through): the verifier answers each request with a sealed step
 * the next one carries back, times the round trips itself, and answers the
 * last with the challenge. The session notes when each request leaves.
 */
async function fetchChallenge(url, current, echo) {
  let body = {};
  for (let rounds = 0; typeof body.challenge != 'string'; rounds++) {
    if (rounds > 16 || (rounds && !body.echo)) throw new Error('meridian: challenge response has no challenge');
    let response;
    try {
      current.challengeSent();
      response = await fetch(echo ? echoUrl(url) : url, {
        method: echo && 'POST',
        body: body.echo,
        cache: 'no-store',
        credentials: 'omit',
      });
      current.challengeReceived();
    } catch (error) {
      throw new Error(`meridian: challenge request failed (${error})`);
    }
    if (!response.ok) throw new Error(`meridian: challenge request answered HTTP ${response.status}`);
    body = await response.json().catch(() => ({}));
  }
  return body;
}

/** The echo's URL (`/v1/echo`) beside a challenge URL. */
function echoUrl(url) {
  const echo = new URL(url);
  echo.pathname = echo.pathname.replace(/challenge$/, 'echo');
  return echo;
}

/**
 * The second origin: asks the verifier's UDP port (`udp` in the challenge
 * answer) for a TURN allocation with the challenge as user name, from the
 * browser itself, around any HTTP or SOCKS proxy. The verifier notes where
 * the datagrams came from and refuses; the refusal (an ICE candidate
 * error) means it has seen them. Never fails: without WebRTC, or after
 * 600 ms, there is simply no UDP origin.
 */
function udpProbe({ challenge, udp }) {
  return new Promise((resolve) => {
    let peer;
    try {
      peer = new RTCPeerConnection({
        iceServers: [{ urls: `turn:${udp}?transport=udp`, username: challenge, credential: 'meridian' }],
      });
    } catch {
      return resolve();
    }
    const done = () => {
      peer.close();
      resolve();
    };
    peer.onicecandidateerror = done;
    setTimeout(done, 600);
    peer.createDataChannel('');
    peer.createOffer().then((offer) => peer.setLocalDescription(offer)).catch(done);
  });
}

/**
 * Takes the challenge through the verifier's echo (`GET /v1/echo`, a
 * WebSocket beside the challenge URL): the verifier sends pings, this page
 * sends each back at once, and the verifier seals the least round trip and
 * its own TCP round trip into the challenge, which arrives last. Nothing
 * of the timing passes through this script's hands. Rejects when the echo
 * cannot run (no WebSocket, a blocking proxy, an old verifier).
 */
function echoChallenge(url, current) {
  return new Promise((resolve, reject) => {
    const echo = echoUrl(url);
    echo.protocol = echo.protocol == 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(echo);
    socket.binaryType = 'arraybuffer';
    const timer = setTimeout(() => socket.close(), 5000);
    socket.onmessage = ({ data }) => {
      if (typeof data == 'string') {
        current.challengeReceived();
        resolve(JSON.parse(data));
        socket.close();
      } else {
        // The last ping's answer is the request the challenge answers.
        if (new Uint8Array(data)[0] & 128) current.challengeSent();
        socket.send(data);
      }
    };
    // A connection that a CSP or the browser refuses may fire only error.
    socket.onclose = socket.onerror = () => {
      clearTimeout(timer);
      reject(new Error('meridian: the echo closed early'));
    };
  });
}

/**
 * Resolves to a signed token. `echo: false` fetches a plain challenge
 * instead of taking it through the echo (the token then carries no timing;
 * the echo costs about one round trip and 32 ms more over its WebSocket,
 * eight round trips over plain requests where no WebSocket gets through).
 * @param {{challengeUrl?: string, action?: string, echo?: boolean}} [options]
 * @returns {Promise<string>}
 */
export async function collect(options = {}) {
  const current = await currentSession();
  // A new session's Worker starts while the challenge travels; the token
  // waits for its view (a token signed without it would only lack that
  // cross-check).
  const worker = workerAnswer(current, 1000);
  const url = options.challengeUrl || defaultChallengeUrl;
  // The echo over a WebSocket, else over plain requests, else none.
  const body =
    (options.echo !== false &&
      (await echoChallenge(url, current).catch(() => fetchChallenge(url, current, 1).catch(() => {})))) ||
    (await fetchChallenge(url, current));
  await worker;
  const probe = body.udp && udpProbe(body);
  const [input, signature] = current.sign(body.challenge, options.action || settings.action || 'login');
  const token = `${input}.${base64url(new Uint8Array(await signature))}`;
  await probe;
  return token;
}

/**
 * The key id of the embedded signing key; undefined until `ready` resolves
 * (engines differ in how soon a module's top-level `init` finishes).
 * @returns {string | undefined}
 */
export function keyId() {
  return loaded ? embeddedKeyId() : undefined;
}

const FIELD = 'meridian-token';

function tokenField(form) {
  let field = form.querySelector(`input[name="${FIELD}"]`);
  if (!field) {
    field = document.createElement('input');
    field.type = 'hidden';
    field.name = FIELD;
    form.append(field);
  }
  return field;
}

/** What went wrong, as a short stable word for the backend. */
function failureKind(error) {
  const message = String(error && error.message || error);
  if (message.includes('challenge')) return 'challenge-unreachable';
  if (/wasm|WebAssembly/.test(message)) return 'wasm-unavailable';
  return 'collector-failed';
}

/** Forms this script fills, with their options. */
const attached = new WeakMap();

/**
 * Attaches to one form: fills the token field before the form submits.
 * Submissions another handler cancels (`preventDefault`) are left alone;
 * the form is then submitted again with `requestSubmit(submitter)`, so the
 * button that was pressed and the page's own validation still count.
 */
export function attach(form, options = {}) {
  if (attached.has(form)) return;
  attached.set(form, options);
  form.dataset.meridianAttached = 'true';
}

// One listener on the window, in the bubbling phase: it runs after the
// form's and the page's own submit handlers, so it sees whether they
// cancelled the submission.
async function onSubmit(event) {
  const form = event.target;
  const options = attached.get(form);
  if (!options) return;
  if (form.dataset.meridianFilled === 'true') {
    // Our own resubmission, with the token in place.
    delete form.dataset.meridianFilled;
    return;
  }
  if (event.defaultPrevented) return;
  event.preventDefault();
  const submitter = event.submitter && event.submitter.form === form ? event.submitter : undefined;
  const field = tokenField(form);
  try {
    field.value = await collect({
      challengeUrl: options.challengeUrl || form.dataset.meridianChallengeUrl,
      action: options.action || form.dataset.meridian || undefined,
    });
  } catch (error) {
    // Never block the user: submit with a marker instead of a token; the
    // verifier reports it as `collector-error` and the policy decides.
    field.value = `meridian-error:${failureKind(error)}`;
    console.warn('meridian:', error);
  }
  form.dataset.meridianFilled = 'true';
  // In a later task: when collection fails at once, this event may still be
  // dispatching, and requestSubmit() does nothing during its own form's
  // submit event.
  setTimeout(() => {
    if (typeof form.requestSubmit === 'function') {
      form.requestSubmit(submitter);
    } else {
      delete form.dataset.meridianFilled;
      form.submit();
    }
  }, 0);
}

// Back/forward cache: a page restored after its form was sent still holds
// the spent token; forget it so the next submission collects a fresh one.
function onPageShow(event) {
  if (!event.persisted) return;
  for (const form of document.querySelectorAll('form[data-meridian-attached]')) {
    delete form.dataset.meridianFilled;
    const field = form.querySelector(`input[name="${FIELD}"]`);
    if (field) field.value = '';
  }
}

if (typeof window !== 'undefined' && typeof document !== 'undefined') {
  window.addEventListener('submit', onSubmit);
  window.addEventListener('pageshow', onPageShow);
}

function attachAll() {
  for (const form of document.querySelectorAll(settings.forms || 'form[data-meridian]')) attach(form);
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', attachAll);
  } else {
    attachAll();
  }
}
