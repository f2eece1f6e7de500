#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { SETTINGS, redactConfig, type SettingSpec } from '../core/config.js';
import { describeError } from '../core/errors.js';
import { exitStatusOf } from './exit.js';
import { addSettings, configFrom } from './settings.js';
import { VERSION } from './version.js';

function configCommand(): Command {
  const cmd = new Command('config')
    .description('Print the effective configuration (secrets masked), or every setting with --list')
    .option('--list', 'list every setting: variable, flag, default, help');
  addSettings(cmd, ['common', 'queue', 'streamer', 'database', 'collector', 'gateway']);
  cmd.action((o: { list?: boolean }) => {
    if (o.list === true) {
      for (const spec of Object.values(SETTINGS) as SettingSpec[]) {
        process.stdout.write(
          `${spec.env.padEnd(22)} --${spec.flag.padEnd(22)} ${(spec.default ?? '').padEnd(14)} ${spec.help}\n`,
        );
      }
      return;
    }
    const config = configFrom(cmd);
    process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
  });
  return cmd;
}

/**
 * The subcommands, each loaded only when it runs (or for the full help): a process imports the
 * modules of its own component only, so a streamer does not carry the gateway's GraphQL stack or
 * the database drivers (less memory, faster start).
 */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  up: async () => (await import('./commands/up.js')).upCommand(),
  streamer: async () => (await import('./commands/streamer.js')).streamerCommand(),
  collector: async () => (await import('./commands/collector.js')).collectorCommand(),
  scrape: async () => (await import('./commands/scrape.js')).scrapeCommand(),
  gateway: async () => (await import('./commands/gateway.js')).gatewayCommand(),
  migrate: async () => (await import('./commands/migrate.js')).migrateCommand(),
  compact: async () => (await import('./commands/compact.js')).compactCommand(),
  generate: async () => (await import('./commands/generate.js')).generateCommand(),
  queue: async () => (await import('./commands/queue.js')).queueCommand(),
  dlq: async () => (await import('./commands/queue.js')).dlqCommand(),
  'etcd-roles': async () => (await import('./commands/etcd-roles.js')).etcdRolesCommand(),
  token: async () => (await import('./commands/token.js')).tokenCommand(),
  config: () => Promise.resolve(configCommand()),
};

/** The subcommand named on the command line (the first argument that is not an option). */
function commandName(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((a) => !a.startsWith('-'));
}

/**
 * The `nexus` program with the subcommands `only` names, or all of them (for help, or a name that
 * is not a subcommand, so commander can say so).
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command('nexus')
    .description(
      'Nexus: GPU telemetry from DCGM exports through an etcd queue into PostgreSQL, served over REST, GraphQL and WebSocket',
    )
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  const load =
    only !== undefined && Object.hasOwn(COMMANDS, only)
      ? [COMMANDS[only]]
      : Object.values(COMMANDS);
  for (const make of load) if (make !== undefined) program.addCommand(await make());
  return program;
}

async function main(): Promise<void> {
  const program = await buildProgram(commandName(process.argv));
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`nexus: ${describeError(err)}\n`);
    // A setting or an input file it cannot use: 2 (README, "Exit status"); anything else 1.
    process.exitCode = exitStatusOf(err);
  }
}

await main();
