/**
 * State that is one per process, not one per copy of baton. An app can load
 * baton twice — `baton run`'s preload comes from the CLI's install, the app's
 * `import 'baton'` from its own `node_modules` — and each copy has its own
 * module instances, so a module-level `let` would be two variables. Such state
 * lives on `globalThis` under a `Symbol.for` key instead, which every copy
 * (and every version that uses the same key) finds.
 *
 * The key carries a version: a copy that changes the shape of what it stores
 * must use a new key, so an older copy never reads a shape it does not know.
 */

/**
 * The process-wide object stored under `Symbol.for('baton.<key>')`, created
 * with `init()` by the first copy that asks for it. Callers mutate the object's
 * fields; they never replace the object.
 */
export function processGlobal<T extends object>(key: string, init: () => T): T {
  const symbol = Symbol.for(`baton.${key}`);
  const slots = globalThis as unknown as Record<symbol, T | undefined>;
  let value = slots[symbol];
  if (value === undefined) {
    value = init();
    Object.defineProperty(globalThis, symbol, { value, enumerable: false, configurable: false, writable: false });
  }
  return value;
}
