#!/usr/bin/env node
/**
 * The `baton` command: `baton start` runs a master with its workers; the other
 * commands act on a running master as `nginx -s` does, found through the same
 * config file (or --name / --pid-file / --run-dir).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { REGISTER_URL } from '../adopt/register-url.js';
import { isBatonError } from '../core/errors.js';
import { loadBinding } from '../native/binding.js';
import type { ConfigOverrides } from '../supervisor/config.js';
import { alive } from '../core/proc.js';
import type { Target, UpgradeObserver, UpgradeSummary } from './operations.js';
import type { UpgradeRecorder, UpgradeReportData } from '../observe/upgrade-report.js';
import { runWrapped } from './run-wrapper.js';
import { findRunGenerations, formatRunGenerations } from './run-generations.js';
import { defaultSocketDir } from '../handover/upgrade-socket.js';
import { compileCacheEnv } from '../handover/compile-cache.js';

const version = (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
/** A commander parser for a positive number of milliseconds (an integer). */
function positiveMs(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new InvalidArgumentError(`expected a positive integer of milliseconds, got ${JSON.stringify(value)}`);
  return n;
}

function atLeastTwo(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 2) throw new InvalidArgumentError(`expected an integer of at least 2, got ${JSON.stringify(value)}`);
  return n;
}

/*
 * The supervisor's side (the master, the operations on it, upgrade reports, status formatting) is
 * imported by the commands that use it, not here: `baton run` — run again, it is an upgrade's first
 * step — then starts without loading zod, pino, yaml and prom-client (~400 ms on a loaded machine).
 */
const operations = () => import('./operations.js');
const upgradeReport = () => import('../observe/upgrade-report.js');

const program = new Command();
program
  .name('baton')
  .description('lossless upgrades for Node.js servers')
  .version(version, '-V, --version', "print baton's version")
  // `baton run app.js --port 3000`: what follows the app path is the app's, without `--`.
  .enablePositionalOptions()
  .configureOutput({
    outputError: (text, write) =>
      write(
        /unknown option/.test(text)
          ? `${text.trimEnd()}\n(options for the app go after the app path, e.g. baton run app.js --port 3000, or after --)\n`
          : text,
      ),
  });

interface TargetOptions {
  config?: string;
  name?: string;
  pidFile?: string;
  runDir?: string;
}

/** The options every command uses to find the master. */
function targetOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'config file (YAML or JSON)')
    .option('--name <name>', 'server name (default: from the config, else "app")')
    .option('--pid-file <file>', "master's pid file (default: <run dir>/<name>.pid)")
    .option('--run-dir <dir>', 'private directory of control and upgrade sockets');
}

function overridesOf(o: TargetOptions): ConfigOverrides {
  const out: ConfigOverrides = {};
  if (o.name) out.name = o.name;
  if (o.pidFile) out.pidFile = o.pidFile;
  if (o.runDir) out.runDir = o.runDir;
  return out;
}

const targetOf = (o: TargetOptions): Target => ({ configFile: o.config, overrides: overridesOf(o) });

/** `--log-format`: one format per output; without it, text on a terminal and JSON lines otherwise. */
const logFormatOption = () =>
  new Option('--log-format <format>', "baton's log lines: text or json (default: text on a terminal, else json)").choices(['text', 'json']);

/** The app's arguments: what follows the app path, a `--` right after it dropped (`baton run app.js -- --port 1`). */
const appArgs = (args: string[]): string[] => (args[0] === '--' ? args.slice(1) : args);

/** Runs a command body, printing a BatonError as one line and setting the exit code. */
/** Writes an upgrade report (JSON and SVG) and says where; a report that cannot be written is a warning, not a failed upgrade. */
async function report(file: string, data: UpgradeReportData, print: (line: string) => void): Promise<void> {
  try {
    const written = (await upgradeReport()).writeUpgradeReport(file, data);
    print(`report: ${written.json}, ${written.svg}`);
  } catch (err) {
    process.stderr.write(`baton: cannot write the upgrade report ${file}: ${(err as Error).message}\n`);
  }
}

function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const code = isBatonError(err) ? ` [${err.code}]` : '';
      process.stderr.write(`baton: ${(err as Error).message}${code}\n`);
      process.exitCode = 1;
    }
  };
}

targetOptions(
  program
    .command('start')
    .description(
      'run a master process and its workers (foreground); signals: TERM/INT fast exit, QUIT graceful, HUP reload, USR1 reopen logs, USR2 binary upgrade, WINCH stop workers',
    )
    .argument('[app]', "the app's entry module (overrides the config's app)")
    .argument('[args...]', "arguments for the app (everything after the app path is the app's)")
    .passThroughOptions()
    .addOption(new Option('-w, --workers <n>', 'worker processes').argParser((v) => Number.parseInt(v, 10)))
    .addOption(logFormatOption()),
).action(
  action(async (app: string | undefined, args: string[], o: TargetOptions & { workers?: number; logFormat?: 'text' | 'json' }) => {
    const overrides = overridesOf(o);
    if (o.logFormat) overrides.logFormat = o.logFormat;
    if (app) overrides.app = app;
    if (o.workers !== undefined) overrides.workers = o.workers;
    const appArguments = appArgs(args);
    if (appArguments.length > 0) overrides.args = appArguments;
    const { Master } = await import('../supervisor/master.js');
    const master = await Master.start({ configFile: o.config, overrides });
    process.exitCode = await master.exited();
    // Workers and the new master are separate processes; nothing of this one must linger.
    process.exit();
  }),
);

targetOptions(
  program
    .command('reload')
    .description(
      'HUP: re-read the config and the app, replace the workers without losing a request; waits for the outcome (exit 1 when refused or failed)',
    ),
).action(
  action(async (o: TargetOptions) => {
    const { reload } = await operations();
    const out = (line: string) => process.stdout.write(`${line}\n`);
    const outcome = await reload(targetOf(o), out);
    if (outcome) out(outcome.message);
  }),
);

targetOptions(program.command('reopen').description('USR1: reopen the log file (after logrotate renamed it)')).action(
  action(async (o: TargetOptions) => {
    const { locate, requireCurrent, signal } = await operations();
    const pid = requireCurrent(await locate(targetOf(o)));
    signal(pid, 'SIGUSR1');
    process.stdout.write(`sent USR1 to master pid ${pid}\n`);
  }),
);

targetOptions(
  program
    .command('stop')
    .description('QUIT: graceful exit (workers finish their connections); --fast sends TERM')
    .option('--fast', 'fast exit: requests in flight get timeouts.fastMs')
    .option('--no-wait', 'do not wait for the master to exit'),
).action(
  action(async (o: TargetOptions & { fast?: boolean; wait: boolean }) => {
    const { locate, requireCurrent, signal, waitUntil } = await operations();
    const l = await locate(targetOf(o));
    const pid = requireCurrent(l);
    signal(pid, o.fast ? 'SIGTERM' : 'SIGQUIT');
    process.stdout.write(`sent ${o.fast ? 'TERM' : 'QUIT'} to master pid ${pid}\n`);
    if (o.wait) {
      const t = l.config.timeouts;
      await waitUntil(`master pid ${pid} to exit`, t.drainMs + t.killGraceMs + 5_000, () => (alive(pid) ? undefined : true));
      process.stdout.write(`master pid ${pid} exited\n`);
    }
  }),
);

targetOptions(
  program
    .command('upgrade')
    .description(
      'binary upgrade in one step: USR2, wait for the new master, health window, WINCH, QUIT — rolls back if the new master fails',
    )
    .option('--keep-old', 'stop before the final QUIT: the old master stays as a fallback')
    .option('--health-url <url>', 'URL that must answer 2xx during the health window')
    .option('--report <file>', 'write a report of the upgrade: JSON to <file>, an SVG timeline next to it (<file> with .svg)')
    .addOption(new Option('--window <ms>', 'health window in ms').argParser((v) => Number.parseInt(v, 10))),
).action(
  action(async (o: TargetOptions & { keepOld?: boolean; healthUrl?: string; window?: number; report?: string }) => {
    const { tryStatus, upgrade } = await operations();
    const { UpgradeRecorder } = await upgradeReport();
    const print = (line: string) => process.stdout.write(`${line}\n`);
    // --report: a recorder follows the upgrade from the moment it located the old master.
    let recorder: { r: UpgradeRecorder; name: string } | undefined;
    const observer: UpgradeObserver | undefined = o.report
      ? {
          begin: (oldPid, config) => (recorder = { r: new UpgradeRecorder(oldPid, (pid) => tryStatus(config, pid)), name: config.name }),
          progress: (text) => recorder?.r.mark(text),
          beforeQuit: async () => recorder?.r.sampleNow(),
        }
      : undefined;
    const writeReport = async (result: 'done' | 'failed', error?: string, summary?: UpgradeSummary) => {
      if (recorder) await report(o.report!, await recorder.r.finish(recorder.name, result, error, summary && { ...summary }), print);
    };
    let s: UpgradeSummary;
    try {
      s = await upgrade(targetOf(o), { keepOld: o.keepOld, healthUrl: o.healthUrl, healthWindowMs: o.window, observer }, print);
    } catch (err) {
      await writeReport('failed', (err as Error).message);
      throw err;
    }
    const done =
      `upgrade done in ${s.durationMs} ms: master pid ${s.oldPid} → ${s.newPid}; old workers' connections: ` +
      `${s.migrated} migrated, ${s.drained} closed cleanly, ${s.forced} cut (requests failed server-side: at most ${s.forced})` +
      (s.oldMasterKept ? `; old master pid ${s.oldPid} kept in standby (baton rollback, or kill -QUIT ${s.oldPid})` : '');
    observer?.progress(done);
    print(done);
    await writeReport('done', undefined, s);
  }),
);

targetOptions(program.command('rollback').description('back to the old master of an upgrade: HUP it, then QUIT the new one')).action(
  action(async (o: TargetOptions) => {
    const { rollback } = await operations();
    const r = await rollback(targetOf(o), (line) => process.stdout.write(`${line}\n`));
    process.stdout.write(`rolled back: master pid ${r.oldPid} serves, pid ${r.newPid} retired\n`);
  }),
);

targetOptions(
  program
    .command('status')
    .description('masters, workers, listeners and connections; and the generations started by baton run')
    .option('--json', 'machine-readable')
    .option('--socket-dir <dir>', "baton run's upgrade socket directory (default: the default one)"),
).action(
  action(async (o: TargetOptions & { json?: boolean; socketDir?: string }) => {
    const { locate } = await operations();
    const { formatStatus } = await import('./status-format.js');
    const l = await locate(targetOf(o));
    const masters = [];
    // A pid file that names no master (stale) or a master that cannot be asked (unreachable, with the errno).
    const problems: { pidFile: string; state: string; pid?: number; code?: string; why: string }[] = [];
    for (const p of [l.probes.current, l.probes.old]) {
      if (p.state === 'running') {
        masters.push(p.status);
        if (p.foundBy)
          process.stderr.write(`baton: master pid ${p.pid} found by its control socket: the pid file ${p.pidFile} does not name it\n`);
      } else if (p.state !== 'absent')
        problems.push({ pidFile: p.pidFile, state: p.state, pid: p.pid, code: p.state === 'unreachable' ? p.code : undefined, why: p.why });
    }
    const generations = findRunGenerations([o.socketDir ?? defaultSocketDir(), l.config.runDir]);
    if (o.json)
      process.stdout.write(
        `${JSON.stringify({ name: l.config.name, pidFile: l.config.pidFile, masters, problems, generations }, null, 2)}\n`,
      );
    else {
      // "no master running" only when that is what the pid files say.
      if (masters.length > 0 || problems.length === 0) process.stdout.write(formatStatus(l.config.name, masters));
      process.stdout.write(formatRunGenerations(generations));
      for (const p of problems) process.stderr.write(`baton: ${p.state === 'stale' ? 'stale' : 'unreachable'}: ${p.why}\n`);
    }
    // 3 as `systemctl status` does for a stopped unit; 1 when a master may run but cannot be asked.
    if (problems.some((p) => p.state === 'unreachable')) process.exitCode = 1;
    else if (masters.length === 0 && generations.length === 0) process.exitCode = 3;
  }),
);

program
  .command('run')
  .description(
    'run an unmodified app (Express, Fastify, Koa, http, http2, ws, net) under baton: its listeners are inherited, taken over or bound; SIGUSR2 to this process, or the same command run again, upgrades it',
  )
  .argument('<app>', "the app's entry module")
  .argument('[args...]', "arguments for the app (everything after the app path is the app's)")
  .passThroughOptions()
  .option('--name <name>', 'generation name (default: the app file name and a hash of its path); names the upgrade socket')
  .option('--socket-dir <dir>', 'private directory of upgrade sockets')
  .addOption(
    new Option('--ready <mode>', 'when the app is ready')
      .choices(['auto', 'explicit'])
      .default(process.env.BATON_READY === 'explicit' ? 'explicit' : 'auto'),
  )
  .option('--quiet-ms <ms>', 'auto: ready once no listen() came for this long', '100')
  .addOption(
    new Option(
      '--liveness-ms <ms>',
      "after a successor's ready, its predecessor Pings it; one silent this long is killed and the old generation serves on (default 5000)",
    ).argParser(positiveMs),
  )
  .addOption(
    new Option(
      '--max-generations <n>',
      'most generations alive at once, the serving one and older ones still draining; an upgrade above it is refused (default 8)',
    ).argParser(atLeastTwo),
  )
  .option(
    '--consistent',
    'data consistency mode: the app loads only once the running generation has stopped taking requests and finished those in flight (requests wait, none fails)',
  )
  .option(
    '--no-close-upgraded',
    'hold connections that cannot migrate (upgraded ones, TLS ones) until the drain timeout (by default they are closed gracefully once the successor is ready: WebSocket 1012, idle HTTPS keep-alive, FIN)',
  )
  .option(
    '--no-tls-ticket-keys',
    "keep each generation's TLS session-ticket keys to itself (by default a successor gets them, so TLS clients resume their sessions after an upgrade)",
  )
  .addOption(logFormatOption())
  .action(
    action(
      async (
        app: string,
        args: string[],
        o: {
          name?: string;
          socketDir?: string;
          ready: string;
          quietMs: string;
          livenessMs?: number;
          maxGenerations?: number;
          consistent?: boolean;
          tlsTicketKeys: boolean;
          closeUpgraded: boolean;
          logFormat?: string;
        },
      ) => {
        // Without a usable native addon the app's process would fail in its preload with a stack trace: say it here, once.
        loadBinding();
        const env: NodeJS.ProcessEnv = { ...process.env, BATON_READY: o.ready, BATON_READY_QUIET_MS: o.quietMs };
        if (o.logFormat) env.BATON_LOG = o.logFormat;
        if (o.consistent) env.BATON_CONSISTENCY = '1';
        if (!o.tlsTicketKeys) env.BATON_TLS_TICKET_KEYS = '0';
        if (!o.closeUpgraded) env.BATON_CLOSE_UPGRADED = '0';
        if (o.livenessMs !== undefined) env.BATON_LIVENESS_MS = String(o.livenessMs);
        if (o.maxGenerations !== undefined) env.BATON_MAX_GENERATIONS = String(o.maxGenerations);
        if (o.name) env.BATON_NAME = o.name;
        if (o.socketDir) env.BATON_SOCKET_DIR = o.socketDir;
        // Each app process compiles what the one before it did: Node's compile cache (≥ 22.1) spares it that.
        Object.assign(env, compileCacheEnv(env));
        // The app runs in its own Node process (require.main, process.argv as usual); this one stays its parent
        // across upgrades (SIGUSR2 here: a takeover by a new child), see run-wrapper.ts.
        process.exitCode = await runWrapped(['--import', REGISTER_URL, path.resolve(app), ...appArgs(args)], env);
        process.exit();
      },
    ),
  );

program
  .command('example')
  .description('run the bundled example server alone, without a master (HTTP/1.1 on PORT, h2c on PORT+1); run it again to upgrade it')
  .option('-p, --port <port>', 'HTTP/1.1 port (env PORT, default 8080)')
  .action(async (opts: { port?: string }) => {
    const { exampleOptionsFromEnv, runExample } = await import('../../examples/example-server.js');
    const env = { ...process.env };
    if (opts.port) env.PORT = opts.port;
    process.exitCode = await runExample(exampleOptionsFromEnv(env));
    // Timers of the app or of clients' leftovers must not keep an exited generation alive.
    process.exit();
  });

await program.parseAsync();
