/**
 * What an app asked for in `dgram.Socket#bind(...)`, in every form Node accepts.
 */
import type { DatagramAddress, DatagramType } from '../listeners/datagram-listeners.js';
import { toPort } from './listen-args.js';

/** A bind() call taken apart. `address` is undefined for calls baton leaves alone (an fd, Node's own implicit bind). */
export interface BindCall {
  address: DatagramAddress | undefined;
  callback: (() => void) | undefined;
}

/**
 * Parses the arguments of `dgram.Socket#bind` for a socket of `type`:
 * `(port?, address?, cb?)` and `(options, cb?)`. Node's own bind of an
 * unbound socket that sends or connects — `({ port: 0, exclusive: true },
 * null)`, a client socket — is left alone, as is `{ fd }`.
 */
export function parseBindArgs(type: DatagramType, args: readonly unknown[]): BindCall {
  if (args.length === 2 && args[1] === null) return { address: undefined, callback: undefined }; // send()/connect()'s own
  const rest = [...args];
  const callback = typeof rest[rest.length - 1] === 'function' ? (rest.pop() as () => void) : undefined;
  const first = rest[0];
  if (first !== null && typeof first === 'object') {
    const o = first as { port?: unknown; address?: unknown; fd?: unknown };
    if (o.fd !== undefined) return { address: undefined, callback };
    const port = toPort(o.port);
    if (port === undefined) return { address: undefined, callback };
    return { address: withHost({ type, port }, o.address), callback };
  }
  const port = toPort(first);
  if (port === undefined) return { address: undefined, callback };
  return { address: withHost({ type, port }, rest[1]), callback };
}

function withHost(address: DatagramAddress, host: unknown): DatagramAddress {
  return typeof host === 'string' && host !== '' ? { ...address, address: host } : address;
}

/**
 * The datagram listener's name, stable across generations: type, address and
 * port asked for, and for port 0 the order of such calls (`udp4-any-0#1`), so a
 * port the kernel picked is inherited by the same bind() of the next version.
 */
export function datagramListenerName(address: DatagramAddress, portZeroIndex: number): string {
  // ':' separates names in LISTEN_FDNAMES (IPv6 addresses hold them).
  const host = (address.address ?? 'any').replace(/:/g, '%3A');
  const port = address.port ?? 0;
  return port === 0 ? `${address.type}-${host}-0#${portZeroIndex}` : `${address.type}-${host}-${port}`;
}
