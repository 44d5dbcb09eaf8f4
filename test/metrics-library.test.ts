/**
 * The library's metrics (`baton/metrics`), as an app uses them: a generation
 * started in this process serves its metrics on a listener of its own and
 * through a handler mounted in the app's server; Prometheus' text format
 * carries the generation, its phase and its open connections, the app's
 * labels, and prom-client's process metrics; after stop() the drain shows,
 * and its connections drained and cut by protocol.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { start } from '../src/index.js';
import { generationMetrics } from '../src/observe/index.js';
import type { DrainReport } from '../src/drain/connection-tracker.js';
import { tempDir } from './helpers/server-process.js';

/** The value of the series `name{labels}` in `text` (Prometheus' text format; label order does not matter). */
function valueOf(text: string, series: string): number {
  const parse = (s: string) => {
    const m = /^([a-zA-Z0-9_:]+)(?:\{(.*)\})?$/.exec(s)!;
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z0-9_]+)="([^"]*)"/g)].map((l) => `${l[1]}=${l[2]}`).sort();
    return `${m[1]}{${labels.join(',')}}`;
  };
  const want = parse(series);
  const line = text.split('\n').find((l) => !l.startsWith('#') && l.includes(' ') && parse(l.slice(0, l.lastIndexOf(' '))) === want);
  assert.ok(line, `${series} missing from:\n${text}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The sum of every series of metric `name` in `text` (as PromQL's `sum(name)`). */
function sumOf(text: string, name: string): number {
  const lines = text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  assert.ok(lines.length > 0, `${name} missing from:\n${text}`);
  return lines.reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
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
  assert.equal(sumOf(text, 'baton_connections_cut_total'), 0);
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
  assert.equal(sumOf(after, 'baton_connections_cut_total'), 0);
  assert.ok(valueOf(after, 'baton_phase_duration_seconds_count{role="generation",phase="serving",app="web"}') >= 1);
  metrics.close();
});

test('generationMetrics: connections drained and cut are counted by protocol (HTTP/1.1, h2c, raw TCP)', async () => {
  const generation = await start({ name: 'metrics-protocols', socketDir: tempDir(), upgradeSignal: null });
  const metrics = generationMetrics(generation);
  const web = http.createServer((_req, res) => res.end('hello\n'));
  const h2 = http2.createServer((_req, res) => res.end('hello\n'));
  const tcp = net.createServer((socket) => socket.on('data', () => undefined));
  await generation.listen('http', { host: '127.0.0.1', port: 0 }, web);
  await generation.listen('h2', { host: '127.0.0.1', port: 0 }, h2);
  await generation.listen('tcp', { host: '127.0.0.1', port: 0 }, tcp);
  await generation.ready();
  const portOf = (s: net.Server) => (s.address() as AddressInfo).port;

  // HTTP/1.1: an idle keep-alive connection outlives a short drain (its keepAliveTimeout is 5 s): cut.
  const agent = new Agent({ keepAliveTimeout: 60_000 });
  await (await request(`http://127.0.0.1:${portOf(web)}/`, { dispatcher: agent })).body.text();
  // h2c: the session gets a GOAWAY and the client closes it: drained.
  const session = http2.connect(`http://127.0.0.1:${portOf(h2)}`);
  session.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const stream = session.request({ ':path': '/' });
    stream.on('error', reject);
    stream.resume();
    stream.on('end', resolve);
  });
  const sessionClosed = new Promise((r) => session.once('close', r));
  // Raw TCP: an open connection stays until the drain timeout: cut.
  const raw = net.connect(portOf(tcp), '127.0.0.1');
  raw.on('error', () => undefined);
  await new Promise((r) => raw.once('connect', r));
  await new Promise<void>((resolve) => {
    const wait = () => (generation.connections >= 3 ? resolve() : setImmediate(wait));
    wait();
  });

  const drained = new Promise<DrainReport>((r) => generation.once('drained', r));
  await generation.stop({ drainTimeoutMs: 500 });
  const report = await drained;
  await sessionClosed;
  assert.deepEqual(report.byProtocol, {
    http1: { migrated: 0, drained: 0, forced: 1 },
    http2: { migrated: 0, drained: 1, forced: 0 },
    socket: { migrated: 0, drained: 0, forced: 1 },
  });
  const text = await metrics.set.render();
  assert.equal(valueOf(text, 'baton_connections_cut_total{protocol="http1"}'), 1);
  assert.equal(valueOf(text, 'baton_connections_cut_total{protocol="socket"}'), 1);
  assert.equal(valueOf(text, 'baton_connections_drained_total{protocol="http2"}'), 1);
  assert.equal(valueOf(text, 'baton_connections_drained_total{protocol="http1"}'), 0);
  assert.doesNotMatch(text, /protocol="unknown"\} [1-9]/, 'every connection has its protocol');
  metrics.close();
  raw.destroy();
  session.destroy();
  await agent.close();
});
