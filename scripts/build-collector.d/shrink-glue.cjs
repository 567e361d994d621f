// Shrinks wasm-bindgen's glue for a page to download:
//
// - Renames the glue's side of a module whose imports, exports and import
//   module `wasm-opt --minify-imports-and-exports-and-modules` has
//   shortened: wasm-bindgen names each import after the function and a hash
//   (`__wbg_getTimezoneOffset_87127d92c2c117e9`), and those names — random
//   hex, written once in the module and once in the glue — were a tenth of
//   what the page downloaded.
// - Drops what no page that can run the module uses: `initSync` (the
//   drop-in loads the module asynchronously), `Session[Symbol.dispose]`
//   (nothing holds a session in a `using`), the string copy for callers
//   that pass no `realloc` (every call passes it), and the polyfill of
//   `TextEncoder.encodeInto` (every engine with WebAssembly's reference
//   types, which the module needs, has it); shortens the console warnings
//   and errors about how the module was loaded, and reads a response whole
//   whenever streaming refuses it (every such engine streams).
//
//   node shrink-glue.cjs MAPPING.json MODULE.wasm GLUE.js
//
// MAPPING is what wasm-opt printed. The glue is rewritten in place; the
// script fails when the glue is not the one it knows (wasm-bindgen is
// pinned, so that means it was upgraded: look again) or does not match the
// module afterwards.
'use strict';
const fs = require('fs');
const [mappingPath, wasmPath, gluePath] = process.argv.slice(2);
const fail = (message) => { console.error(`shrink-glue: ${message}`); process.exit(1); };

const mapping = JSON.parse(fs.readFileSync(mappingPath, 'utf8'));
const imported = new Map(mapping.imports.map(([, name, short]) => [name, short]));
const exported = new Map(mapping.exports.map(([name, short]) => [name, short]));

// The module name every import now has (wasm-opt gives them all one).
function importModules(bytes) {
  let at = 8;
  const leb = () => { let value = 0, shift = 0, byte; do { byte = bytes[at++]; value |= (byte & 0x7f) << shift; shift += 7; } while (byte & 0x80); return value >>> 0; };
  const name = () => { const length = leb(); const text = Buffer.from(bytes.subarray(at, at + length)).toString('utf8'); at += length; return text; };
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = leb();
    if (id !== 2) { at += size; continue; }
    const count = leb();
    const modules = new Set();
    for (let i = 0; i < count; i++) {
      modules.add(name());
      name();
      const kind = bytes[at++];
      if (kind === 0) leb();
      else if (kind === 1) { at++; const flags = leb(); leb(); if (flags & 1) leb(); }
      else if (kind === 2) { const flags = leb(); leb(); if (flags & 1) leb(); }
      else if (kind === 3) { at += 2; }
      else fail(`import kind ${kind} not understood`);
    }
    return modules;
  }
  return new Set();
}
const modules = [...importModules(fs.readFileSync(wasmPath))];
if (modules.length !== 1) fail(`expected one import module, found ${modules.join(', ') || 'none'}`);

let glue = fs.readFileSync(gluePath, 'utf8');
let renamedImports = 0;
glue = glue.replace(/^(\s*)(\w+)(: function)/gm, (whole, indent, name, rest) => {
  const short = imported.get(name);
  if (short === undefined) return whole;
  renamedImports++;
  return indent + short + rest;
});
if (renamedImports !== imported.size) fail(`renamed ${renamedImports} of ${imported.size} imports in the glue`);
const moduleKey = /"\.\/[\w.-]+_bg\.js": import0/g;
if ((glue.match(moduleKey) || []).length !== 1) fail('the glue does not name its import module once');
glue = glue.replace(moduleKey, `${JSON.stringify(modules[0])}: import0`);
glue = glue.replace(/\bwasm\.(\w+)\b/g, (whole, name) => {
  const short = exported.get(name);
  if (short === undefined) fail(`the glue uses wasm.${name}, which the module does not export`);
  return `wasm.${short}`;
});
// Exact texts of the pinned wasm-bindgen's glue, and what replaces them.
const trims = [
  ['export { initSync, __wbg_init as default };', 'export { __wbg_init as default };'],
  ['if (Symbol.dispose) Session.prototype[Symbol.dispose] = Session.prototype.free;\n', ''],
  [
    `    if (realloc === undefined) {
        const buf = cachedTextEncoder.encode(arg);
        const ptr = malloc(buf.length, 1) >>> 0;
        getUint8ArrayMemory0().subarray(ptr, ptr + buf.length).set(buf);
        WASM_VECTOR_LEN = buf.length;
        return ptr;
    }
`,
    '',
  ],
  [
    `if (!('encodeInto' in cachedTextEncoder)) {
    cachedTextEncoder.encodeInto = function (arg, view) {
        const buf = cachedTextEncoder.encode(arg);
        view.set(buf);
        return {
            read: arg.length,
            written: buf.length
        };
    };
}
`,
    '',
  ],
  // Every engine with reference types streams; a response it refuses
  // before reading it (served without `application/wasm`) is read whole
  // instead, with a warning; a failure after reading it (a module that
  // does not compile, a CSP) is the error itself.
  [
    `        if (!module.ok) {
            throw new Error(\`failed to fetch Wasm: \${module.status} \${module.statusText} fetching '\${module.url}'\`);
        }

        if (typeof WebAssembly.instantiateStreaming === 'function') {
            try {
                return await WebAssembly.instantiateStreaming(module, imports);
            } catch (e) {
                const validResponse = expectedResponseType(module.type);

                if (validResponse && module.headers.get('Content-Type') !== 'application/wasm') {
                    console.warn("\`WebAssembly.instantiateStreaming\` failed because your server does not serve Wasm with \`application/wasm\` MIME type. Falling back to \`WebAssembly.instantiate\` which is slower. Original error:\\n", e);

                } else { throw e; }
            }
        }
`,
    `        if (!module.ok) throw new Error(\`meridian: wasm HTTP \${module.status}\`);
        try {
            return await WebAssembly.instantiateStreaming(module, imports);
        } catch (e) {
            if (module.bodyUsed) throw e;
            console.warn('meridian: serve .wasm as application/wasm', e);
        }
`,
  ],
  [
    `
    function expectedResponseType(type) {
        switch (type) {
            case 'basic': case 'cors': case 'default': return true;
        }
        return false;
    }
`,
    '',
  ],
  [
    "'using deprecated parameters for the initialization function; pass a single object instead'",
    "'meridian: init({ module_or_path })'",
  ],
];
for (const [text, replacement] of trims) {
  if (glue.split(text).length !== 2) fail(`the glue does not contain ${text} once`);
  glue = glue.replace(text, () => replacement);
}
const calls = (glue.match(/passStringToWasm0\([^)]*\)/g) || []).filter((c) => c !== 'passStringToWasm0(arg, malloc, realloc)');
if (calls.some((call) => !/, wasm\.\w+, wasm\.\w+\)$/.test(call))) fail(`a string is passed without realloc: ${calls}`);
fs.writeFileSync(gluePath, glue);
