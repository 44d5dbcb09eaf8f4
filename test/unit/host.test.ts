/**
 * The host context (src/host.ts) is one per process, not one per copy of
 * baton: a second module instance of host.ts — what an app's own copy of
 * baton is beside the preload's — sees the host and the adoptedReady target
 * the first one registered, and the other way round.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isBatonError } from '../../src/core/errors.js';
import * as first from '../../src/host.js';

/** Another instance of the same module (a query string makes Node load it again). */
const second = (await import(new URL('../../src/host.js?second-copy', import.meta.url).href)) as typeof first;

test('two copies of host.ts share the host and the adoptedReady target', async () => {
  assert.notEqual(first.registerHost, second.registerHost, 'two module instances');

  await assert.rejects(second.adoptedReady(), (e: unknown) => isBatonError(e, 'ERR_BATON_INVALID_PHASE'));
  let readied = 0;
  first.registerAdoptedReady(async () => {
    readied++;
  });
  await second.adoptedReady();
  assert.equal(readied, 1, "the second copy's adoptedReady() reached the first copy's adoption");

  assert.equal(first.currentHost(), undefined);
  const host: first.Host = { name: 'test host', settings: { socketDir: '/nonexistent' }, attach: () => undefined };
  second.registerHost(host);
  assert.equal(first.currentHost(), host, "the first copy's start() would consult the second copy's host");
  assert.throws(
    () => first.registerHost({ ...host, name: 'another' }),
    (e: unknown) => isBatonError(e, 'ERR_BATON_INVALID_PHASE') && /test host/.test((e as Error).message),
  );
});
