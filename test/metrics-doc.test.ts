/** Every metric family and diagnostics channel is documented in docs/metrics.md, with its type and labels, and nothing documented is stale. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ChannelNames } from '../src/index.js';
import { FailPoints } from '../src/core/failpoint.js';
import { MetricCatalog } from '../src/observe/metric-catalog.js';

const doc = fs.readFileSync(fileURLToPath(new URL('../../docs/metrics.md', import.meta.url)), 'utf8');

/** The rows of the metrics table: name, type, labels, from. */
function documentedMetrics(): { name: string; type: string; labels: string[]; from: string }[] {
  return [...doc.matchAll(/^\|\s*`(baton_[a-z_]+)`\s*\|\s*(\w+)\s*\|\s*([^|]*)\|\s*(\w+)\s*\|/gm)].map((m) => ({
    name: m[1]!,
    type: m[2]!,
    labels: [...m[3]!.matchAll(/`([a-z_]+)`/g)].map((l) => l[1]!),
    from: m[4]!,
  }));
}

test('docs/metrics.md lists every metric of the code with its type, labels and origin, and no other', () => {
  const documented = documentedMetrics();
  const code = MetricCatalog.map((m) => ({ name: m.name, type: m.type, labels: [...m.labels], from: m.from }));
  assert.deepEqual(
    [...documented].sort((a, b) => a.name.localeCompare(b.name)),
    [...code].sort((a, b) => a.name.localeCompare(b.name)),
  );
});

test('docs/metrics.md documents every diagnostics channel and every handover step', () => {
  for (const name of Object.values(ChannelNames)) assert.match(doc, new RegExp(`\\|\\s*\`${name}\`\\s*\\|`), `${name} missing`);
  const channels = [...doc.matchAll(/^\|\s*`(baton:[a-z:]+)`\s*\|/gm)].map((m) => m[1]);
  assert.deepEqual(channels.sort(), Object.values(ChannelNames).sort());
  for (const step of FailPoints) assert.ok(doc.includes(`\`${step}\``), `step ${step} missing`);
});
