/**
 * baton's fault-injection suite (`npm run test:faults`): runs the CI slice of
 * the fault matrix (FAULTS=full: the whole matrix; FAULTS=<regex>: the cases
 * of the full matrix whose id matches) and the resource cases (full disk, fd
 * exhaustion), one at a time, and prints a summary table. Exits 1 if a case
 * fails that is not in known-open.ts, or if a known-open case now passes (so
 * the list is emptied as fixes land).
 */
import { caseId, runCase, type CaseResult } from './fault-case.js';
import { knownOpen } from './known-open.js';
import { ciSlice, fullMatrix } from './matrix.js';
import { resourceCases } from './resources.js';

const which = process.env.FAULTS ?? 'ci';
const cases = which === 'ci' ? ciSlice() : which === 'full' ? fullMatrix() : fullMatrix().filter((c) => new RegExp(which).test(caseId(c)));
const resources = which === 'ci' || which === 'full' ? resourceCases() : resourceCases().filter((r) => new RegExp(which).test(r.id));

interface Row {
  result: CaseResult;
  verdict: 'pass' | 'FAIL' | 'known open' | 'NOW PASSES';
  item?: string;
}
const rows: Row[] = [];
const t0 = Date.now();
const total = cases.length + resources.length;
const judge = (result: CaseResult) => {
  const k = knownOpen(result.id, result.problems);
  const verdict: Row['verdict'] = k ? (result.ok ? 'NOW PASSES' : 'known open') : result.ok ? 'pass' : 'FAIL';
  rows.push({ result, verdict, item: k?.map((e) => e.item).join('; ') });
  const n = rows.length;
  console.log(`[${n}/${total}] ${verdict.padEnd(10)} ${result.id} (${(result.durationMs / 1000).toFixed(1)} s)`);
  if (!result.ok) {
    for (const p of result.problems) console.log(`    - ${p}`);
  }
  if (verdict === 'FAIL' || process.env.FAULTS_SHOW_LOG === '1')
    for (const l of result.logTail.slice(-Number(process.env.FAULTS_LOG_LINES ?? 15))) console.log(`      | ${l.slice(0, 300)}`);
};
for (const spec of cases) judge(await runCase(spec));
for (const r of resources) judge(await r.run());

const pad = (s: string, n: number) => s.padEnd(n);
const w = Math.max(...rows.map((r) => r.result.id.length), 4);
console.log(`\n${pad('case', w)}  ${pad('outcome', 10)}  failed (held/other≤allowed)  next  serve ms`);
for (const { result: r, verdict } of rows) {
  const failed = `${r.failed} (${r.held}/${r.unheld}≤${r.allowance})`;
  console.log(`${pad(r.id, w)}  ${pad(verdict, 10)}  ${pad(failed, 27)}  ${pad(String(r.nextFailed), 4)}  ${r.timeToServeMs ?? '—'}`);
}
const count = (v: Row['verdict']) => rows.filter((r) => r.verdict === v).length;
console.log(
  `\n${rows.length} cases in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${count('pass')} pass, ${count('known open')} known open, ${count('FAIL')} FAIL, ${count('NOW PASSES')} now pass (remove from test/faults/known-open.ts)`,
);
for (const r of rows.filter((x) => x.verdict === 'known open')) console.log(`  known open: ${r.result.id} — ${r.item}`);
// Exit now: a process killed mid-handover may leave a pipe of its children open.
process.exit(count('FAIL') + count('NOW PASSES') > 0 ? 1 : 0);
