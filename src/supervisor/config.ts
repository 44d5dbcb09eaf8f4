/**
 * The supervisor's config file (YAML, or JSON — a subset of YAML), validated
 * against a schema. A value written `${VAR}` or `${VAR:-default}` is taken from
 * the environment (`port: "${PORT:-8080}"`). Every error names the file, the key's path and its line:
 * `baton.yaml:7:3: workers: expected a number, got "two"`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { BatonError } from '../core/errors.js';
import { defaultSocketDir } from '../handover/upgrade-socket.js';

const namePattern = /^[A-Za-z0-9._-]{1,64}$/;
const listenerName = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a listener name is letters, digits, ".", "_" or "-"');

const tcpListener = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535),
  backlog: z.number().int().positive().optional(),
});
const unixListener = z.strictObject({
  path: z.string().min(1),
  /** File mode of the socket, e.g. 0o660 (YAML `0o660`, or a decimal number). */
  mode: z.number().int().min(0).max(0o777).optional(),
  backlog: z.number().int().positive().optional(),
});
/** A UDP socket (`dgram`), told apart from the others by its `type`; `address` defaults to the loopback address of the type. */
const udpListener = z.strictObject({
  type: z.enum(['udp4', 'udp6'], "a UDP listener's type is udp4 or udp6"),
  address: z.string().min(1).optional(),
  port: z.number().int().min(0).max(65535),
});

/**
 * One listener entry: a UDP socket when it has a `type`, a unix socket when it
 * has a `path`, else TCP. Dispatched on those keys rather than tried against
 * each schema in turn, so an error names the entry's own problem (`listeners.dns.port:
 * expected number`) instead of a union's "invalid input".
 */
const listenerEntry = z
  .unknown()
  .transform(
    (value, ctx): z.infer<typeof tcpListener> | z.infer<typeof unixListener> | (z.infer<typeof udpListener> & { address: string }) => {
      const keyed = value !== null && typeof value === 'object';
      const schema = keyed && 'type' in value ? udpListener : keyed && 'path' in value ? unixListener : tcpListener;
      const parsed = schema.safeParse(value);
      if (parsed.success) {
        const entry = parsed.data;
        if (!('type' in entry)) return entry;
        return { ...entry, address: entry.address ?? (entry.type === 'udp4' ? '127.0.0.1' : '::1') };
      }
      // The entry's own issues, code and all (loadConfig words an unknown key from its `keys`).
      for (const issue of parsed.error.issues) ctx.addIssue(issue as Parameters<typeof ctx.addIssue>[0]);
      return z.NEVER;
    },
  );

const positiveMs = z.number().int().positive();

/** The schema of the config file. Unknown keys are errors. */
export const configSchema = z.strictObject({
  /** Names the server: its run directory entries and the workers' generation name. */
  name: z.string().regex(namePattern, 'a name is 1–64 letters, digits, ".", "_" or "-"').default('app'),
  /** The app's entry module, relative to the config file. The command line's app argument wins. */
  app: z.string().min(1).optional(),
  /** Arguments passed to the app. */
  args: z.array(z.string()).default([]),
  /** Worker processes running the app, all accepting on the same listening sockets. */
  workers: z.number().int().min(1).max(256).default(1),
  /** The sockets the master owns, by name: TCP `{ host, port }`, unix `{ path }` or UDP `{ type: udp4 | udp6, address, port }`. */
  listeners: z.record(listenerName, listenerEntry).default({}),
  /** The master's pid file (the old master's becomes `<pidFile>.oldbin` during a binary upgrade). */
  pidFile: z.string().min(1).optional(),
  /** Directory (0700) of the control and worker upgrade sockets. */
  runDir: z.string().min(1).optional(),
  /** State that outlives a generation (effective config, counters), written atomically. */
  stateFile: z.string().min(1).optional(),
  /**
   * Data consistency mode for zero-code workers: a new worker's app loads only once the
   * worker it replaces has stopped taking requests and finished those in flight.
   */
  consistency: z.boolean().default(false),
  /**
   * TLS session resumption across workers and reloads: the master makes one set of
   * session-ticket keys per listener and gives it to every worker (over IPC), so a
   * client resumes its session on any worker, before and after a reload. false: each
   * worker keeps keys of its own.
   */
  tlsTicketKeys: z.boolean().default(true),
  /**
   * Connections that cannot migrate when a worker is replaced (upgraded ones, TLS ones:
   * wss, HTTPS keep-alive): true closes them gracefully once the new worker is ready
   * (StartOptions.closeUpgraded); false holds them until the drain timeout. Reaches the
   * workers as BATON_CLOSE_UPGRADED.
   */
  closeUpgraded: z.boolean().default(true),
  /**
   * Most generations of a worker slot alive at once: its serving worker and
   * replaced ones still draining (a long download). A reload that would make
   * more is refused (ERR_BATON_TOO_MANY_GENERATIONS) and the workers serve on;
   * the workers' own handovers keep the same bound (StartOptions.maxGenerations).
   */
  maxGenerations: z.number().int().min(2).max(1024).default(8),
  /** Extra environment of the workers. */
  env: z.record(z.string(), z.string()).default({}),
  log: z
    .strictObject({
      /** Log file; stdout when absent. Reopened on USR1 (logrotate). */
      file: z.string().min(1).optional(),
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
      /** `text` (human lines), `json` (JSON lines), or `auto`: text on a terminal, JSON otherwise (a file, a pipe). */
      format: z.enum(['auto', 'text', 'json']).default('auto'),
    })
    .default({ level: 'info', format: 'auto' }),
  timeouts: z
    .strictObject({
      /** A worker must be ready within this many ms. */
      readyMs: positiveMs.default(30_000),
      /** A graceful stop (QUIT, retired workers) lets connections finish for this many ms. */
      drainMs: positiveMs.default(30_000),
      /** A fast stop (TERM/INT) lets requests in flight finish for this many ms. */
      fastMs: positiveMs.default(1_000),
      /** After a stop's time is up, a worker gets SIGKILL this many ms later. */
      killGraceMs: positiveMs.default(2_000),
      /**
       * After a new worker is ready, its predecessor Pings it; one that does not answer for this many ms is
       * taken for hung, killed, and the old worker serves on. Requests the hung worker holds wait this long.
       */
      livenessMs: positiveMs.default(5_000),
    })
    .default({ readyMs: 30_000, drainMs: 30_000, fastMs: 1_000, killGraceMs: 2_000, livenessMs: 5_000 }),
  restart: z
    .strictObject({
      /** First delay before restarting a crashed worker; doubles per crash in the window. */
      initialDelayMs: positiveMs.default(100),
      maxDelayMs: positiveMs.default(10_000),
      /** This many crashes of one worker slot within `windowMs` is a crash loop (reported). */
      crashLoopCount: z.number().int().min(2).default(5),
      windowMs: positiveMs.default(30_000),
    })
    .default({ initialDelayMs: 100, maxDelayMs: 10_000, crashLoopCount: 5, windowMs: 30_000 }),
  /** Serve Prometheus metrics of the master and its workers on this address (`GET /metrics`); see docs/metrics.md. */
  metrics: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535),
    })
    .optional(),
  upgrade: z
    .strictObject({
      /** `baton upgrade`: the new generation must stay healthy this long before the old one retires. */
      healthWindowMs: z.number().int().min(0).default(1_000),
      /** Optional URL fetched during the health window; any non-2xx answer fails it. */
      healthUrl: z.url().optional(),
    })
    .default({ healthWindowMs: 1_000 }),
});

/** The validated config, defaults applied, paths absolute. */
export type Config = z.infer<typeof configSchema> & {
  /** Absolute path of the app's entry module. */
  app: string;
  pidFile: string;
  runDir: string;
  stateFile: string;
  /** The file it was read from, if any. */
  source: string | undefined;
};

/** A listener's address in the config. */
export type ListenerConfig = Config['listeners'][string];

/** A UDP listener of the config (`type` udp4 or udp6; `address` filled in with the type's loopback address). */
export type DatagramListenerConfig = Extract<ListenerConfig, { type: string }>;

/** Whether `l` is a UDP listener. */
export function isDatagramConfig(l: ListenerConfig): l is DatagramListenerConfig {
  return 'type' in l;
}

/** What the command line adds to (and overrides in) the file. */
export interface ConfigOverrides {
  app?: string;
  /** `--log-format`: replaces the file's `log.format`. */
  logFormat?: 'auto' | 'text' | 'json';
  /** The app's arguments (`baton start app.js -- args`): replace the file's `args`. */
  args?: string[];
  workers?: number;
  name?: string;
  pidFile?: string;
  runDir?: string;
}

/**
 * Reads and validates a config file, then applies `overrides`. Relative paths
 * are resolved against the file's directory (against `cwd` without a file).
 * Throws ERR_BATON_CONFIG_INVALID naming file, key path and line.
 */
export function loadConfig(
  file: string | undefined,
  overrides: ConfigOverrides = {},
  cwd = process.cwd(),
  { requireApp = true, env = process.env }: { requireApp?: boolean; env?: NodeJS.ProcessEnv } = {},
): Config {
  let raw: unknown = {};
  let doc: Document | undefined;
  let lines: LineCounter | undefined;
  const where = file ? path.resolve(cwd, file) : undefined;
  if (where) {
    let text: string;
    try {
      text = fs.readFileSync(where, 'utf8');
    } catch (err) {
      throw new BatonError('ERR_BATON_CONFIG_INVALID', `${where}: cannot read the config file: ${(err as Error).message}`, {
        cause: err,
      });
    }
    lines = new LineCounter();
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const problem = doc.errors[0];
    if (problem) {
      throw new BatonError('ERR_BATON_CONFIG_INVALID', `${where}${position(lines, problem.pos[0])}: ${problem.message.split('\n')[0]}`);
    }
    raw = doc.toJS() ?? {};
  }
  const unset = substituteEnv(raw, env, []);
  if (unset) {
    const at = doc && lines ? lineOf(doc, lines, unset.keyPath, false) : '';
    throw new BatonError(
      'ERR_BATON_CONFIG_INVALID',
      `${where ?? 'config'}${at}: ${unset.keyPath.join('.')}: environment variable ${unset.variable} is not set (write \${${unset.variable}:-default} for a default)`,
    );
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    let keyPath = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') keyPath = [...keyPath, String(issue.keys[0])];
    const at = doc && lines ? lineOf(doc, lines, keyPath, issue.code === 'unrecognized_keys') : '';
    const label = keyPath.length > 0 ? keyPath.join('.') : '(top level)';
    const message = issue.code === 'unrecognized_keys' ? `unknown key '${issue.keys[0]}'` : issue.message;
    throw new BatonError('ERR_BATON_CONFIG_INVALID', `${where ?? 'config'}${at}: ${label}: ${message}`);
  }
  const base = where ? path.dirname(where) : cwd;
  const c = parsed.data;
  const name = overrides.name ?? c.name;
  const app = overrides.app ? path.resolve(cwd, overrides.app) : c.app ? path.resolve(base, c.app) : undefined;
  if (!app && requireApp) {
    throw new BatonError('ERR_BATON_CONFIG_INVALID', `${where ?? 'config'}: app: no app entry given (in the file or on the command line)`);
  }
  const runDir = path.resolve(base, overrides.runDir ?? c.runDir ?? defaultSocketDir());
  const listeners = Object.fromEntries(
    Object.entries(c.listeners).map(([k, v]) => [k, 'path' in v ? { ...v, path: path.resolve(base, v.path) } : v]),
  );
  return {
    ...c,
    name,
    app: app ?? '',
    workers: overrides.workers ?? c.workers,
    args: overrides.args ?? c.args,
    listeners,
    runDir,
    pidFile: path.resolve(base, overrides.pidFile ?? c.pidFile ?? path.join(runDir, `${name}.pid`)),
    stateFile: path.resolve(base, c.stateFile ?? path.join(runDir, `${name}.state.json`)),
    log: {
      ...c.log,
      format: overrides.logFormat ?? c.log.format,
      file: c.log.file === undefined ? undefined : path.resolve(base, c.log.file),
    },
    source: where,
  };
}

const placeholder = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/;

/**
 * Replaces, in place, every string value that is exactly `${VAR}` or
 * `${VAR:-default}` by the environment's value (a number when it reads as
 * one: `port: "${PORT:-8080}"`). Returns the first variable that is unset and
 * has no default, with where it is.
 */
function substituteEnv(node: unknown, env: NodeJS.ProcessEnv, keyPath: string[]): { variable: string; keyPath: string[] } | undefined {
  if (!node || typeof node !== 'object') return undefined;
  const entries: [string | number, unknown][] = Array.isArray(node) ? node.map((v, i) => [i, v]) : Object.entries(node);
  for (const [key, value] of entries) {
    const here = [...keyPath, String(key)];
    if (typeof value !== 'string') {
      const unset = substituteEnv(value, env, here);
      if (unset) return unset;
      continue;
    }
    const m = placeholder.exec(value);
    if (!m) continue;
    const found = env[m[1]!] || m[2];
    if (found === undefined) return { variable: m[1]!, keyPath: here };
    (node as Record<string | number, unknown>)[key] = /^\d+$/.test(found) ? Number(found) : found;
  }
  return undefined;
}

/** `:line:col` of the deepest node on `keyPath` that exists (the key itself for an unknown key). */
function lineOf(doc: Document, lines: LineCounter, keyPath: string[], wantKey: boolean): string {
  type Ranged = { range?: readonly number[] | null } | null | undefined;
  // From the key itself up to the top: the first node the document has.
  for (let n = keyPath.length; n > 0; n--) {
    const parent = doc.getIn(keyPath.slice(0, n - 1), true);
    let node: Ranged;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === keyPath[n - 1]);
      node = pair && (((wantKey && n === keyPath.length) || !pair.value ? pair.key : pair.value) as Ranged);
    } else {
      node = doc.getIn(keyPath.slice(0, n), true) as Ranged;
    }
    if (node?.range) return position(lines, node.range[0]!);
  }
  return doc.contents?.range ? position(lines, doc.contents.range[0]) : '';
}

function position(lines: LineCounter, offset: number): string {
  const pos = lines.linePos(offset);
  return `:${pos.line}:${pos.col}`;
}
