/**
 * The library's metrics (`baton/metrics`), as an app uses them: a generation
 * started in this process serves its metrics on a listener of its own and
 * through a handler mounted in the app's server; Prometheus' text format
 * carries the generation, its phase and its open connections, the app's
 * labels, and prom-client's process metrics; after stop() the drain shows.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { start } from '../src/index.js';
import { generationMetrics } from '../src/observe/index.js';
import { tempDir } from './helpers/server-process.js';

/** The value of the series `name{labels}` in `text` (Prometheus' text format; label order does not matter). */
function valueOf(text: string, series: string): number {
  const parse = (s: string) => {
    const m = /^([a-z_]+)(?:\{(.*)\})?$/.exec(s)!;
    const labels = [...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => `${l[1]}=${l[2]}`).sort();
    return `${m[1]}{${labels.join(',')}}`;
  };
  const want = parse(series);
  const line = text.split('\n').find((l) => !l.startsWith('#') && l.includes(' ') && parse(l.slice(0, l.lastIndexOf(' '))) === want);
  assert.ok(line, `${series} missing from:\n${text}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

test('generationMetrics: its own listener and a mounted handler serve the generation, its phase and connections', async () => {
  const generation = await start({ name: 'metrics-lib', socketDir: tempDir(), upgradeSignal: null });
  const metrics = generationMetrics(generation, { app: 'web' });
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') return metrics.handler(req, res);
    res.end('hello\n');
  });
  await generation.listen('http', { host: '127.0.0.1', port: 0 }, server);
  await generation.ready();
  const own = await metrics.listen(0);
  const port = (server.address() as AddressInfo).port;

  // A keep-alive client holds one connection open while the metrics are read.
  const agent = new Agent({ keepAliveTimeout: 60_000 });
  await (await request(`http://127.0.0.1:${port}/`, { dispatcher: agent })).body.text();
  const mounted = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const res = await fetch(`http://127.0.0.1:${(own.address() as AddressInfo).port}/metrics`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  for (const t of [mounted, text]) {
    assert.equal(valueOf(t, 'baton_generation{app="web"}'), 1);
    assert.equal(valueOf(t, 'baton_phase{role="generation",phase="serving",app="web"}'), 1);
    assert.equal(valueOf(t, 'baton_phase{role="generation",phase="draining",app="web"}'), 0);
    assert.ok(valueOf(t, 'process_resident_memory_bytes{app="web"}') > 0);
  }
  // The keep-alive client's connection (and the mounted scrape's, if still open) are the generation's.
  assert.ok(valueOf(text, 'baton_connections{generation="1",phase="serving",app="web"}') >= 1);
  assert.equal(valueOf(text, 'baton_connections_cut_total{app="web"}'), 0);
  const notFound = await fetch(`http://127.0.0.1:${(own.address() as AddressInfo).port}/other`);
  assert.equal(notFound.status, 404);
  await notFound.text();

  // stop(): the drain is counted; the phase histogram saw serving end.
  const drained = new Promise((r) => generation.once('drained', r));
  await agent.close();
  await generation.stop({ drainTimeoutMs: 5_000 });
  await drained;
  const after = await metrics.set.render();
  assert.equal(valueOf(after, 'baton_phase{role="generation",phase="exited",app="web"}'), 1);
  assert.equal(valueOf(after, 'baton_connections_cut_total{app="web"}'), 0);
  assert.ok(valueOf(after, 'baton_phase_duration_seconds_count{role="generation",phase="serving",app="web"}') >= 1);
  metrics.close();
});
