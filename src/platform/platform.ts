/**
 * The operating system as baton's policy code reaches it: the native addon,
 * process spawning, this process's signals and IPC channel, and the clock —
 * one small interface, with the real implementation as the default. The
 * supervisor's master and worker pool take a {@link Platform}, so their
 * policy (backoff, crash loops, the master's phases) is unit-tested with
 * fakes (test/unit/); everything else keeps calling Node directly.
 *
 * @module
 */
import { realClock, type Clock } from '../core/clock.js';
import { spawnWithListeners } from '../handover/exec.js';
import { loadBinding, type NativeBinding } from '../native/binding.js';

/** The events of this process that the master listens to. */
export type ProcessEvent = NodeJS.Signals | 'exit' | 'uncaughtException' | 'unhandledRejection' | 'message' | 'disconnect';

/**
 * This process: its signals and events, and its IPC channel to the process
 * that started it (Node's `process.send`), if any.
 */
export interface ProcessPort {
  /** Adds a listener (`process.on`): for a signal, installing one replaces Node's default action. */
  on(event: ProcessEvent, listener: (...args: never[]) => void): void;
  /** Removes a listener added with {@link ProcessPort.on}. */
  off(event: ProcessEvent, listener: (...args: never[]) => void): void;
  /** True when this process was started with an IPC channel (`process.send` exists). */
  readonly hasChannel: boolean;
  /** True while that channel is open. */
  readonly connected: boolean;
  /** Sends one message over the channel; ignored when it is closed, a failed write is dropped. */
  send(message: unknown): void;
  /** Closes the channel (idempotent). */
  disconnect(): void;
  /** Lets the channel not keep the event loop alive. */
  unrefChannel(): void;
  /** Sets the code the process ends with when it ends by itself (`process.exitCode`). */
  setExitCode(code: number): void;
  /** Holds the event loop open (nothing else may: a master in standby) until the returned function is called. */
  keepAlive(): () => void;
}

/** The OS seam. Create fakes of it in tests; {@link realPlatform} otherwise. */
export interface Platform {
  readonly clock: Clock;
  /** The addon ({@link loadBinding}): throws ERR_BATON_NATIVE_UNAVAILABLE where it cannot load. */
  native(): NativeBinding;
  /**
   * Spawns a process with listeners as its fds 3… ({@link spawnWithListeners}: same contract;
   * the fds given stay the caller's).
   */
  spawn: typeof spawnWithListeners;
  readonly process: ProcessPort;
}

/** This process, through Node's `process` object. */
const realProcess: ProcessPort = {
  on: (event, listener) => void process.on(event as NodeJS.Signals, listener as () => void),
  off: (event, listener) => void process.off(event as NodeJS.Signals, listener as () => void),
  get hasChannel() {
    return typeof process.send === 'function';
  },
  get connected() {
    return process.connected === true;
  },
  send(message) {
    if (process.connected) process.send?.(message, undefined, {}, () => undefined);
  },
  disconnect() {
    if (process.connected) process.disconnect();
  },
  unrefChannel() {
    process.channel?.unref();
  },
  setExitCode(code) {
    process.exitCode = code;
  },
  keepAlive() {
    const timer = setInterval(() => undefined, 2 ** 30);
    return () => clearInterval(timer);
  },
};

/** The real OS: the addon, `child_process`, `process` and Node's timers. */
export const realPlatform: Platform = {
  clock: realClock,
  native: loadBinding,
  spawn: spawnWithListeners,
  process: realProcess,
};
