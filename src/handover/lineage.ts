/**
 * The older generations of a server that may still be alive — draining a
 * long download or a slow request while newer ones serve — so that a
 * generation can bound how many are alive at once (`maxGenerations`).
 *
 * Nobody holds the whole list: each predecessor names, in its Hello, the
 * older generations it knows of that are still alive, and its successor adds
 * the predecessor itself. A generation that exits drops out by itself: each
 * entry carries the process's start time, read again when the list is asked
 * for, so an exited process (or a newer one the kernel gave the same pid)
 * does not count.
 */
import { BatonError } from '../core/errors.js';
import { startTime } from '../core/proc.js';
import type { HelloPayload, LineageEntry } from '../protocol/frames.js';

/** Most entries a Hello carries: far above any sensible maxGenerations. */
export const LINEAGE_MAX = 64;

/** The older generations of one generation (see the module comment). Immutable. */
export class Lineage {
  readonly #entries: readonly LineageEntry[];

  private constructor(entries: readonly LineageEntry[]) {
    this.#entries = entries.slice(0, LINEAGE_MAX);
  }

  /** A generation that took over from nobody: it has no older generation. */
  static none(): Lineage {
    return new Lineage([]);
  }

  /**
   * The lineage of a successor of the predecessor whose Hello is `hello`:
   * the predecessor, then the older generations it named (none from a
   * predecessor that predates lineages). Read at the handover, while the
   * predecessor is alive.
   */
  static after(hello: Pick<HelloPayload, 'pid' | 'generation' | 'lineage'>): Lineage {
    const start = startTime(hello.pid);
    const predecessor = start === undefined ? [] : [{ pid: hello.pid, generation: hello.generation, start }];
    return new Lineage([...predecessor, ...(hello.lineage ?? [])]);
  }

  /** The older generations still alive now, newest first. */
  alive(): LineageEntry[] {
    return this.#entries.filter((e) => startTime(e.pid) === e.start);
  }
}

/**
 * The refusal of an upgrade of generation `own` of server `name` (pid: this
 * process) whose older generations `older` are still alive, when the
 * successor would make more than `max` generations alive at once; undefined
 * when it may go on. `successor` names the successor in the message.
 */
export function tooManyGenerations(
  name: string,
  own: number,
  older: readonly LineageEntry[],
  max: number,
  successor: string,
): BatonError | undefined {
  if (older.length + 2 <= max) return undefined;
  const draining = older.map((e) => `generation ${e.generation} (pid ${e.pid})`).join(', ');
  return new BatonError(
    'ERR_BATON_TOO_MANY_GENERATIONS',
    `server '${name}': ${successor} refused: ${older.length + 1} generations are alive — generation ${own} (pid ${process.pid}) serves, ${draining} still drain${older.length === 1 ? 's' : ''} — and maxGenerations is ${max}; upgrade again once the oldest has exited, or raise maxGenerations`,
  );
}
