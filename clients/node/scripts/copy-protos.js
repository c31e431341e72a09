// copy-protos.js — `npm pack` / `npm publish` hook (prepack): copies the
// repository's proto/vecshard/v1/*.proto into the package's proto/ folder,
// so a published package carries the API it speaks (lib/proto.js prefers
// that copy).
'use strict';

const fs = require('fs');
const path = require('path');

const src = path.join(__dirname, '..', '..', '..', 'proto', 'vecshard', 'v1');
const dst = path.join(__dirname, '..', 'proto', 'vecshard', 'v1');
fs.mkdirSync(dst, { recursive: true });
for (const f of fs.readdirSync(src)) {
  if (f.endsWith('.proto')) fs.copyFileSync(path.join(src, f), path.join(dst, f));
}
console.log(`copy-protos: ${src} -> ${dst}`);
