/**
 * How big the soak-sized loops of the real-process tier run. `npm test` (and
 * CI) runs a representative slice: every path and every assertion, with fewer
 * upgrades or clients. `BATON_TEST_FULL=1` (`npm run test:full`) runs them at
 * the sizes their issues name — 10 upgrades per path, 200 socket.io clients,
 * 1000 WebSocket clients — which take the suite well past CI's share.
 */

const FULL = process.env.BATON_TEST_FULL === '1';

/** `full` under `BATON_TEST_FULL=1`, else `slice` (which must still exercise every path of the loop). */
export function sized(full: number, slice: number): number {
  return FULL ? full : slice;
}
