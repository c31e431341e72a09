// copy-protos.js — `npm pack` / `npm publish` hooks. prepack: copies the
// repository's proto/vecshard/v1/*.proto into the package's proto/ folder,
// so a published package carries the API it speaks (lib/proto.js prefers
// that copy). postpack (--remove): deletes the copy again, so the working
// tree (and its tests) keeps reading the repository's proto/.
'use strict';

const fs = require('fs');
const path = require('path');

const src = path.join(__dirname, '..', '..', '..', 'proto', 'vecshard', 'v1');
const copy = path.join(__dirname, '..', 'proto');
if (process.argv[2] === '--remove') {
  fs.rmSync(copy, { recursive: true, force: true });
  console.log(`copy-protos: removed ${copy}`);
} else {
  const dst = path.join(copy, 'vecshard', 'v1');
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(src)) {
    if (f.endsWith('.proto')) fs.copyFileSync(path.join(src, f), path.join(dst, f));
  }
  console.log(`copy-protos: ${src} -> ${dst}`);
}
