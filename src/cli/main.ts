#!/usr/bin/env node
/**
 * The `baton` command. Today: `baton example` runs the bundled example server.
 */
import { Command } from 'commander';

const program = new Command();
program.name('baton').description('lossless upgrades for Node.js servers');

program
  .command('example')
  .description('run the bundled example server (HTTP/1.1 on PORT, h2c on PORT+1); run it again to upgrade it')
  .option('-p, --port <port>', 'HTTP/1.1 port (env PORT, default 8080)')
  .action(async (opts: { port?: string }) => {
    const { exampleOptionsFromEnv, runExample } = await import('../../examples/example-server.js');
    const env = { ...process.env };
    if (opts.port) env.PORT = opts.port;
    process.exitCode = await runExample(exampleOptionsFromEnv(env));
    // Timers of the app or of clients' leftovers must not keep an exited generation alive.
    process.exit();
  });

await program.parseAsync();
