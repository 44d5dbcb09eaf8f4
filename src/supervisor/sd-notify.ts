/**
 * systemd's readiness protocol (sd_notify): newline-separated `KEY=value`
 * assignments sent as one datagram to the AF_UNIX socket named by
 * NOTIFY_SOCKET. With `Type=notify` the master reports READY=1 when its
 * workers serve, RELOADING=1 around a reload, STOPPING=1, MAINPID= when a new
 * master takes over (the unit needs `NotifyAccess=all` for that), and STATUS=.
 */
import { loadBinding, type NativeBinding } from '../native/binding.js';
import { systemError } from '../native/system-error.js';

/** Environment variable naming the notify socket. */
export const NOTIFY_SOCKET_ENV = 'NOTIFY_SOCKET';

/** Sends notifications to systemd, or does nothing when not started by it. */
export class SdNotify {
  readonly #socket: string | undefined;
  readonly #native: () => NativeBinding;

  /** Reads NOTIFY_SOCKET from `env` (kept there: a new master started by this one notifies too); sends through `native`'s addon. */
  constructor(env: NodeJS.ProcessEnv = process.env, native: () => NativeBinding = loadBinding) {
    this.#native = native;
    const s = env[NOTIFY_SOCKET_ENV];
    this.#socket = s && (s.startsWith('/') || s.startsWith('@')) ? s : undefined;
  }

  /** True when a notify socket is set. */
  get enabled(): boolean {
    return this.#socket !== undefined;
  }

  /**
   * Sends `fields` as one message (e.g. `{ READY: 1, STATUS: 'serving' }`).
   * Throws a system error (syscall 'sendto', path) when the socket refuses it;
   * a no-op without NOTIFY_SOCKET.
   */
  send(fields: Readonly<Record<string, string | number>>): void {
    if (!this.#socket) return;
    const text = Object.entries(fields)
      .map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}`)
      .join('\n');
    const rc = this.#native().datagramSend(this.#socket, Buffer.from(text));
    if (rc < 0) throw systemError(rc, 'sendto', this.#socket);
  }
}
