/**
 * Preload of a supervisor worker: `node --import <this> <app>` (the master
 * spawns every worker so, supervisor/worker-process.ts). Registers the
 * worker's master as the process's host (host.ts) — before the app or
 * zero-code adoption runs — then installs zero-code adoption
 * (adopt/register.ts), which stays out of the way of an app that calls
 * start() itself.
 *
 * The supervision (BATON_SUPERVISED) is taken from the environment here, so
 * the app and its children never see it.
 */
import { registerHost } from '../host.js';
import { supervisorHost, takeSupervision } from './worker-link.js';

const supervision = takeSupervision(process.env);
if (supervision) registerHost(supervisorHost(supervision));

// Top-level await: Node evaluates the app's main module only after this preload (and adoption's) settled.
await import('../adopt/register.js');
