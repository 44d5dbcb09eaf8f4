/** Every stable error code is documented in docs/errors.md, and nothing documented is stale. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '../src/index.js';

const doc = fs.readFileSync(fileURLToPath(new URL('../../docs/errors.md', import.meta.url)), 'utf8');

test('every error code is documented', () => {
  for (const code of Object.keys(ErrorCodes))
    assert.match(doc, new RegExp(`\\|\\s*\`${code}\`\\s*\\|`), `${code} missing from docs/errors.md`);
});

test('docs/errors.md documents no unknown code', () => {
  const documented = [...doc.matchAll(/\|\s*`(ERR_BATON_[A-Z_]+)`\s*\|/g)].map((m) => m[1]);
  assert.deepEqual(
    documented.filter((c) => !(c! in ErrorCodes)),
    [],
  );
  assert.equal(documented.length, Object.keys(ErrorCodes).length);
});
