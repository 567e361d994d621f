// Meridian drop-in loader.
//
//   <script type="module" src="https://verifier.example/pkg/meridian.js"
//           data-action="login"></script>
//   <form data-meridian> … </form>
//
// Before a marked form submits, it fetches a fresh challenge, collects the
// browser's signals, and puts the signed token into the form's
// <input type="hidden" name="meridian-token"> (created when missing), so a
// page left open for hours still submits a live token. If the verifier is
// unreachable or WebAssembly cannot run, the form submits anyway with a
// `meridian-error:<kind>` marker the verifier reports as `collector-error`.
//
// Script attributes (all optional): data-action (default "login"),
// data-challenge-url (default: /v1/challenge on the script's origin),
// data-forms (a CSS selector, default "form[data-meridian]"). A form's own
// data-meridian="<action>" and data-meridian-challenge-url win.
// Single-page apps call `collect()` themselves.
import init, { sign, keyId as embeddedKeyId } from './meridian_collector.js';

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

// A dedicated Worker reports the zone and languages it sees: spoofing
// extensions usually patch only the page. Started once when the module
// loads and reused, since neither changes while a page is open; after 1 s
// without an answer (or when Workers are forbidden) there is no report.
const WORKER_SCRIPT =
  'const o=Intl.DateTimeFormat().resolvedOptions();' +
  'postMessage({zone:o.timeZone,off:-new Date().getTimezoneOffset(),locale:o.locale,' +
  'languages:Array.from(self.navigator&&navigator.languages||[])});close();';
const workerReport = new Promise((resolve) => {
  try {
    const url = URL.createObjectURL(new Blob([WORKER_SCRIPT], { type: 'text/javascript' }));
    const worker = new Worker(url);
    URL.revokeObjectURL(url);
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = () => resolve(undefined);
    setTimeout(resolve, 1000);
  } catch {
    resolve(undefined);
  }
});

// `Function.prototype.toString` and `Date.prototype.toString` of a fresh
// same-origin realm (a hidden iframe): the collector stringifies the page's
// time and language functions with them, so a page that patched its own
// toString cannot hide its other patches. A new browsing context costs
// milliseconds, so it is made once, when the browser is idle after the
// module loads (or by the first collect(), if that comes first). None in a
// worker or where iframes fail.
let pristine = null;
function pristineRealm() {
  if (pristine !== null) return pristine;
  pristine = undefined;
  try {
    const frame = document.createElement('iframe');
    frame.hidden = true;
    document.documentElement.append(frame);
    const realm = frame.contentWindow;
    pristine = [realm.Function.prototype.toString, realm.Date.prototype.toString];
    frame.remove();
  } catch {
    // No realm: the collector falls back to the page's own toString.
  }
  return pristine;
}
if (typeof document !== 'undefined') {
  (typeof requestIdleCallback === 'function' ? requestIdleCallback : setTimeout)(pristineRealm);
}

/** Fetches a challenge, timing the round trip for the clock-skew check. */
async function fetchChallenge(url) {
  const started = performance.now();
  let response;
  try {
    response = await fetch(url, { cache: 'no-store', credentials: 'omit' });
  } catch (error) {
    throw new Error(`meridian: challenge request failed (${error})`);
  }
  if (!response.ok) throw new Error(`meridian: challenge request answered HTTP ${response.status}`);
  const body = await response.json().catch(() => ({}));
  const roundTripMs = performance.now() - started;
  const receivedAtMs = Date.now();
  if (typeof body.challenge !== 'string') throw new Error('meridian: challenge response has no challenge');
  return { challenge: body.challenge, receivedAtMs, roundTripMs };
}

/**
 * Resolves to a signed token.
 * @param {{challengeUrl?: string, action?: string}} [options]
 * @returns {Promise<string>}
 */
export async function collect(options = {}) {
  await ready;
  const fetched = await fetchChallenge(options.challengeUrl || defaultChallengeUrl);
  const worker = await workerReport;
  return sign({ ...fetched, action: options.action || settings.action || 'login', worker, pristine: pristineRealm() });
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
  if (message.includes('WebAssembly') || message.includes('wasm')) return 'wasm-unavailable';
  return 'collector-failed';
}

/** Attaches to one form: fills the token field before the form submits. */
export function attach(form, options = {}) {
  if (form.dataset.meridianAttached) return;
  form.dataset.meridianAttached = 'true';
  form.addEventListener('submit', async (event) => {
    if (form.dataset.meridianFilled === 'true') return;
    event.preventDefault();
    const field = tokenField(form);
    try {
      field.value = await collect({
        challengeUrl: options.challengeUrl || form.dataset.meridianChallengeUrl,
        action: options.action || form.dataset.meridian || undefined,
      });
    } catch (error) {
      // Never block the user: submit with a marker instead of a token; the
      // verifier reports it as the stable error code `collector-error`.
      field.value = `meridian-error:${failureKind(error)}`;
      console.warn('meridian:', error);
    }
    form.dataset.meridianFilled = 'true';
    form.submit();
  });
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
