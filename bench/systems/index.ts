/** Every system of the peer benchmark, in report order: baton first, then its peers. */
import type { SystemDefinition } from '../lib/system.js';
import { batonSupervisorSystem, batonSystem } from './baton.js';
import { haproxyReload } from './haproxy.js';
import { nginxSystem } from './nginx.js';
import { plainRestart } from './plain.js';
import { pm2Reload } from './pm2.js';

export const systems: readonly SystemDefinition[] = [
  batonSystem('takeover'),
  batonSystem('exec'),
  batonSupervisorSystem('reload'),
  batonSupervisorSystem('upgrade'),
  nginxSystem('binary'),
  nginxSystem('hup'),
  haproxyReload,
  pm2Reload,
  plainRestart,
];
