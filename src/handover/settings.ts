/**
 * The resolved settings of a generation, read by the generation and by both
 * sides of its handovers (handover/predecessor.ts, handover/successor.ts).
 * Their own module so that none of those imports another for them.
 */
import type { ExecCommand } from './exec.js';

/** How this generation came to be. */
export type Origin = 'fresh' | 'takeover' | 'exec' | 'systemd' | 'supervisor';

/** The resolved settings of a generation (see {@link Defaults} for each default; start() resolves them). */
export interface GenerationSettings {
  name: string;
  socketPath: string;
  helloTimeoutMs: number;
  readyTimeoutMs: number;
  drainTimeoutMs: number;
  migrateTimeoutMs: number;
  livenessTimeoutMs: number;
  migrateBatchSize: number;
  migrate: boolean;
  migrateAfterResponse: boolean;
  closeUpgraded: boolean;
  killGraceMs: number;
  datagramLingerMs: number;
  maxFrameBytes: number;
  preAuthFrameBytes: number;
  maxStateBytes: number;
  /** Most generations alive at once (Defaults.maxGenerations). */
  maxGenerations: number;
  upgradeSignal: NodeJS.Signals | null;
  allowRoot: boolean;
  allowedUids: readonly number[];
  pidFile: string | undefined;
  exec: ExecCommand;
  state: (() => unknown) | undefined;
  /** Data consistency mode (StartOptions.consistency). */
  consistency: boolean;
  /** What app this generation runs (StartOptions.app). */
  app: string | undefined;
  namedOnPurpose: boolean;
}
