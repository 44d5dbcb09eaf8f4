/**
 * baton — lossless upgrades for Node.js servers.
 *
 * ```ts
 * import { start } from 'baton';
 * const generation = await start({ name: 'web' });
 * await generation.listen('http', { host: '127.0.0.1', port: 8080 }, server);
 * await generation.ready();
 * generation.on('phase', (phase) => { if (phase === 'exited') process.exit(0); });
 * ```
 */
export { start, type StartOptions } from './start.js';
export {
  Generation,
  type Origin,
  type UpgradeReport,
  type PredecessorDone,
  type GenerationEvents,
  type GenerationSettings,
} from './generation.js';
export { type Phase } from './core/phase.js';
export { BatonError, ErrorCodes, isBatonError, type ErrorCode } from './core/errors.js';
export { Defaults } from './core/options.js';
export { type DrainReport } from './drain/connection-tracker.js';
export { type MissingInternal } from './native/internals.js';
export { type ListenAddress, type Listener, type ListenerOrigin } from './listeners/listener-set.js';
export { type DatagramAddress, type DatagramListener, type DatagramType } from './listeners/datagram-listeners.js';
export { defaultSocketDir } from './handover/upgrade-socket.js';
export { type ExecCommand } from './handover/exec.js';
export { adoptedReady } from './host.js';
export { ChannelNames, type PhaseEvent, type StepEvent, type BatchEvent } from './core/channels.js';
