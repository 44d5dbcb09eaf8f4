/**
 * TLS session-ticket keys across generations. A TLS connection cannot leave
 * its process (OpenSSL keeps its keys in user space), so it drains; what can
 * move is the key that encrypts the session tickets the server handed out.
 * The predecessor reads each TLS listener's keys (`tls.Server#getTicketKeys`)
 * and sends them with that listener's entry in the Listeners frame, to a
 * successor whose Hello names feature `tls-ticket-keys`; the successor sets
 * them on the server that listens under that name (`setTicketKeys`) before it
 * accepts, so a client that reconnects with its ticket resumes its session
 * instead of paying a full handshake. Under `baton start` every worker of a
 * master gets the master's keys over the IPC channel instead (one set per
 * configured listener, the same for every worker and every reload).
 *
 * The keys are secrets: they travel only over the upgrade socket (0600 in a
 * 0700 directory, peer uid checked) or the master's IPC channel, as the
 * listening fds do, and never into a file, a log, an event, the status or a
 * metric. A server-side session cache (the app's `newSession` /
 * `resumeSession` handlers) is the app's and does not travel.
 */
import crypto from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';

/** The protocol feature (frames.ts): Listeners entries may carry `ticketKeys`. */
export const TICKET_KEYS_FEATURE = 'tls-ticket-keys';

/** Node's ticket keys are always 48 bytes (16 name, 16 HMAC, 16 AES). */
export const TICKET_KEY_BYTES = 48;

/** Ticket keys by listener name, base64 (what a Listeners entry carries). */
export type TicketKeys = ReadonlyMap<string, string>;

/** The ticket keys of `server` in base64, or undefined when it is not a TLS server. */
export function ticketKeysOf(server: net.Server): string | undefined {
  if (!(server instanceof tls.Server)) return undefined;
  return server.getTicketKeys().toString('base64');
}

/**
 * Sets `keys` (base64, {@link TICKET_KEY_BYTES} bytes) as the ticket keys of
 * `server` when it is a TLS server; anything else is left alone. Returns
 * whether they were set.
 */
export function applyTicketKeys(server: net.Server, keys: string | undefined): boolean {
  if (keys === undefined || !(server instanceof tls.Server)) return false;
  const bytes = Buffer.from(keys, 'base64');
  if (bytes.length !== TICKET_KEY_BYTES) return false;
  server.setTicketKeys(bytes);
  return true;
}

/** Fresh random ticket keys, base64 (a master's, for listener names it holds). */
export function newTicketKeys(): string {
  return crypto.randomBytes(TICKET_KEY_BYTES).toString('base64');
}

/**
 * `entries` of a Listeners frame with the ticket keys of each one's server
 * (`serverOf` its name) added where it is a TLS server. Call only for a
 * successor whose Hello named {@link TICKET_KEYS_FEATURE}.
 */
export function withTicketKeys<E extends { name: string; ticketKeys?: string }>(
  entries: readonly E[],
  serverOf: (name: string) => net.Server | undefined,
): E[] {
  return entries.map((e) => {
    const server = serverOf(e.name);
    const ticketKeys = server && ticketKeysOf(server);
    return ticketKeys === undefined ? e : { ...e, ticketKeys };
  });
}

/** The ticket keys a Listeners frame carried, by listener name. */
export function receivedTicketKeys(entries: readonly { name: string; ticketKeys?: string }[]): Map<string, string> {
  return new Map(entries.flatMap((e) => (e.ticketKeys === undefined ? [] : [[e.name, e.ticketKeys] as const])));
}
