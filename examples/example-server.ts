/**
 * The bundled example: an HTTP/1.1 server and an HTTP/2 (h2c, prior knowledge)
 * server on 127.0.0.1 under baton. Every response names the generation and pid
 * that served it; a request counter is handed from generation to generation as
 * app state.
 *
 * Run it with `npm start`. Running the same command again while it runs
 * performs a takeover upgrade; `kill -USR2 <pid>` performs an exec upgrade.
 */
import http from 'node:http';
import http2 from 'node:http2';
import { WebSocketServer, type WebSocket } from 'ws';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { start, defaultSocketDir, type Generation } from '../src/index.js';

export interface ExampleOptions {
  port: number;
  h2cPort: number;
  host: string;
  name: string;
  pidFile: string;
  socketDir: string;
}

/** Options from the environment: PORT (8080), H2C_PORT (PORT+1), BATON_SOCKET_DIR, BATON_PID_FILE. */
export function exampleOptionsFromEnv(env = process.env): ExampleOptions {
  const port = Number(env.PORT ?? 8080);
  const socketDir = env.BATON_SOCKET_DIR ?? defaultSocketDir();
  return {
    port,
    h2cPort: Number(env.H2C_PORT ?? port + 1),
    host: env.HOST ?? '127.0.0.1',
    name: env.BATON_NAME ?? 'example',
    socketDir,
    pidFile: env.BATON_PID_FILE ?? path.join(socketDir, 'example.pid'),
  };
}

const log = (msg: string) => process.stdout.write(`[baton example pid ${process.pid}] ${msg}\n`);

/** Runs the example until its generation exits; resolves with the exit code to use. */
export async function runExample(opts: ExampleOptions): Promise<number> {
  const startedAt = performance.now();
  let served = 0;
  let generation: Generation;
  try {
    generation = await start({ name: opts.name, socketDir: opts.socketDir, pidFile: opts.pidFile, state: () => ({ served }) });
  } catch (err) {
    log(`cannot start: ${(err as Error).message}`);
    return 1;
  }
  const inherited = generation.inheritedState as { served?: number } | undefined;
  served = inherited?.served ?? 0;
  const body = () => `generation ${generation.number} pid ${process.pid}\n`;
  const headers = () => ({
    'content-type': 'text/plain',
    'x-baton-generation': String(generation.number),
    'x-baton-pid': String(process.pid),
  });

  const h1 = http.createServer((_req, res) => {
    served++;
    res.writeHead(200, headers());
    res.end(body());
  });
  const h2 = http2.createServer();
  h2.on('stream', (stream) => {
    served++;
    stream.respond({ ':status': 200, ...headers() });
    stream.end(body());
  });

  // WebSocket echo at /ws: each echo names the generation that sent it. Open
  // connections move to the next generation alive, with their message count.
  const wss = new WebSocketServer({ server: h1, path: '/ws' });
  // The WebSocketServer re-emits the HTTP server's errors; a listen error is reported by listen() below.
  wss.on('error', () => undefined);
  const echoed = new WeakMap<WebSocket, number>();
  const echo = (ws: WebSocket, count = 0) => {
    echoed.set(ws, count);
    ws.on('message', (data: Buffer) => {
      const n = (echoed.get(ws) ?? 0) + 1;
      echoed.set(ws, n);
      ws.send(`generation ${generation.number} pid ${process.pid} echo #${n}: ${data.toString()}`);
    });
    ws.on('error', () => undefined);
  };
  wss.on('connection', (ws) => echo(ws));
  generation.migrateWebSockets('http', wss, {
    state: (ws) => ({ count: echoed.get(ws as unknown as WebSocket) ?? 0 }),
    adopt: (ws, state) => echo(ws as unknown as WebSocket, (state as { count?: number } | undefined)?.count ?? 0),
  });
  generation.on('connections-in', ({ adopted, refused }) =>
    log(`adopted ${adopted} live connections from the predecessor (${refused} refused)`),
  );

  generation.on('upgrade-start', ({ via, pid }) => log(`upgrade (${via}) started: successor pid ${pid}`));
  generation.on('upgrade', (r) =>
    log(
      `upgrade (${r.via}) done: generation ${r.successorGeneration} pid ${r.successorPid} ready in ${r.timeToReadyMs.toFixed(1)} ms; draining ${r.connections} connections`,
    ),
  );
  generation.on('upgrade-failed', (err) => log(`upgrade failed, still serving: ${err.message}`));
  generation.on('peer-refused', (err) => log(`upgrade peer refused: ${err.message}`));
  generation.on('drained', (r) =>
    log(
      `drained in ${r.durationMs.toFixed(1)} ms: ${r.migrated} connections migrated alive, ${r.drained} closed cleanly, ${r.forced} forced; exiting`,
    ),
  );
  generation.on('predecessor-done', (d) =>
    log(`predecessor pid ${d.pid} exited: ${d.migrated} migrated, ${d.drained} drained, ${d.forced} forced`),
  );
  generation.on('warning', (err) => log(`warning: ${err.message}`));

  for (const [name, port, server] of [
    ['http', opts.port, h1],
    ['h2c', opts.h2cPort, h2],
  ] as const) {
    try {
      await generation.listen(name, { host: opts.host, port }, server);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // One line naming the address, on stderr; the generation gives the address back.
      process.stderr.write(`baton example: cannot listen on ${name}://${opts.host}:${port}: ${e.message}\n`);
      generation.removeAllListeners('drained');
      await generation.stop().catch(() => undefined);
      return 1;
    }
  }
  try {
    await generation.ready();
  } catch (err) {
    log(`not ready: ${(err as Error).message}`);
    return 1;
  }
  const [a, b] = generation.getListeners();
  log(
    `generation ${generation.number} (${generation.origin}) serving http://${a?.address}:${a?.port} and h2c://${b?.address}:${b?.port}; ` +
      `ready ${performance.now().toFixed(1)} ms after process start (${(performance.now() - startedAt).toFixed(1)} ms in baton); ${generation.settings.pidFile ? `pid file ${generation.settings.pidFile}; ` : ''}${served} requests served so far`,
  );
  const stop = () => void generation.stop();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await generation.exited();
  return 0;
}

// Run directly (`node dist/examples/example-server.js`, as `baton start` runs
// its workers): serve until the generation exits.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runExample(exampleOptionsFromEnv());
  // Leftover client timers must not keep an exited generation alive.
  process.exit();
}
