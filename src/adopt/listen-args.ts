/**
 * What an app asked for in `server.listen(...)`, in every form Node accepts.
 */
import type { ListenAddress } from '../listeners/listener-set.js';

/** A listen() call taken apart. `address` is undefined for forms baton leaves alone (an fd or a handle). */
export interface ListenCall {
  address: ListenAddress | undefined;
  callback: (() => void) | undefined;
}

/**
 * Parses the arguments of `net.Server#listen`: `(port?, host?, backlog?, cb?)`,
 * `(path, backlog?, cb?)`, `(options, cb?)` and `(handle | { fd }, cb?)`.
 */
export function parseListenArgs(args: readonly unknown[]): ListenCall {
  const rest = [...args];
  const callback = typeof rest[rest.length - 1] === 'function' ? (rest.pop() as () => void) : undefined;
  const first = rest[0];
  if (first === undefined || first === null || typeof first === 'function') return { address: { port: 0 }, callback };
  if (typeof first === 'object') {
    const o = first as { port?: unknown; host?: unknown; path?: unknown; fd?: unknown; handle?: unknown; _handle?: unknown };
    if (o.fd !== undefined || o.handle !== undefined || o._handle !== undefined) return { address: undefined, callback };
    if (typeof o.path === 'string') return { address: { path: o.path }, callback };
    const port = toPort(o.port);
    if (port === undefined) return { address: undefined, callback };
    return { address: typeof o.host === 'string' ? { host: o.host, port } : { port }, callback };
  }
  const port = toPort(first);
  if (port !== undefined) {
    const host = typeof rest[1] === 'string' ? rest[1] : undefined;
    return { address: host !== undefined ? { host, port } : { port }, callback };
  }
  if (typeof first === 'string') return { address: { path: first }, callback };
  return { address: undefined, callback };
}

/** A port argument as Node reads it (absent: 0; a decimal string counts); undefined when it is none. */
export function toPort(v: unknown): number | undefined {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
}

/**
 * The listener's name, stable across generations: the address it asked for,
 * and for port 0 the order of such calls (`tcp-127.0.0.1-0#2`), so a port the
 * kernel picked is inherited by the same listen() call of the next version.
 */
export function listenerName(address: ListenAddress, portZeroIndex: number): string {
  // ':' separates names in LISTEN_FDNAMES (IPv6 hosts and paths may hold one).
  const clean = (s: string) => s.replace(/:/g, '%3A');
  if ('path' in address) return `unix-${clean(address.path)}`;
  const host = clean(address.host ?? 'any');
  return address.port === 0 ? `tcp-${host}-0#${portZeroIndex}` : `tcp-${host}-${address.port}`;
}
