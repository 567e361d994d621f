// Puts the module's glue inside the drop-in, so a page downloads one
// script, not two: one request fewer, and one compressed stream whose
// dictionary both halves share (about 300 B less gzipped than apart). The
// key id `keyId()` answers is written in as text (the RFC 7638 thumbprint
// of the key the module embeds), so the module exports no function for it.
//
//   node bundle.cjs GLUE.js DROP-IN.js KEY.jwk OUT.js
//
// The glue keeps its own scope (a function the drop-in calls once), so
// neither file's names can collide. Fails when either file is not the
// shape it knows.
'use strict';
const fs = require('fs');
const [gluePath, dropInPath, keyPath, outPath] = process.argv.slice(2);
const fail = (message) => { console.error(`bundle: ${message}`); process.exit(1); };

let glue = fs.readFileSync(gluePath, 'utf8');
// The drop-in always calls init with `{ module_or_path: URL }`, so the
// glue's branches for other arguments (a module, bytes, no argument, the
// deprecated forms) never run here.
for (const [text, replacement] of [
  ['\nexport class Session ', '\nclass Session '],
  ['\nexport { __wbg_init as default };', '\n'],
  [
    `    } else {
        const instance = await WebAssembly.instantiate(module, imports);

        if (instance instanceof WebAssembly.Instance) {
            return { instance, module };
        } else {
            return instance;
        }
    }
`,
    '    }\n',
  ],
  [
    `    if (module_or_path !== undefined) {
        if (Object.getPrototypeOf(module_or_path) === Object.prototype) {
            ({module_or_path} = module_or_path)
        } else {
            console.warn('meridian: init({ module_or_path })')
        }
    }

    if (module_or_path === undefined) {
        module_or_path = new URL('meridian_collector_bg.wasm', import.meta.url);
    }
`,
    '    ({ module_or_path } = module_or_path);\n',
  ],
  [
    `    if (typeof module_or_path === 'string' || (typeof Request === 'function' && module_or_path instanceof Request) || (typeof URL === 'function' && module_or_path instanceof URL)) {
        module_or_path = fetch(module_or_path);
    }
`,
    '    module_or_path = fetch(module_or_path);\n',
  ],
]) {
  if (glue.split(text).length !== 2) fail(`the glue does not contain ${JSON.stringify(text)} once`);
  glue = glue.replace(text, () => replacement);
}
if (/^\s*export\b/m.test(glue)) fail('the glue exports more than Session and its init');

// RFC 7638: SHA-256 of the required members in lexicographic order.
const jwk = JSON.parse(fs.readFileSync(keyPath, 'utf8'));
if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') fail(`${keyPath} is not an Ed25519 JWK`);
const kid = require('crypto')
  .createHash('sha256')
  .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x }))
  .digest('base64url');

let dropIn = fs.readFileSync(dropInPath, 'utf8');
for (const [text, replacement] of [
  [
    "import init, { Session, keyId as embeddedKeyId } from './meridian_collector.js';",
    `const { Session, init } = (() => {\n${glue}\nreturn { Session, init: __wbg_init };\n})();`,
  ],
  ['embeddedKeyId()', JSON.stringify(kid)],
]) {
  if (dropIn.split(text).length !== 2) fail(`the drop-in does not contain ${text} once`);
  dropIn = dropIn.replace(text, () => replacement);
}
fs.writeFileSync(outPath, dropIn);
