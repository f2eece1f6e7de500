#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { SETTINGS, loadConfig, redactConfig, type SettingSpec } from '../core/config.js';
import { isNexusError, describeError } from '../core/errors.js';
import { collectorCommand } from './commands/collector.js';
import { gatewayCommand } from './commands/gateway.js';
import { generateCommand } from './commands/generate.js';
import { migrateCommand } from './commands/migrate.js';
import { dlqCommand, queueCommand } from './commands/queue.js';
import { streamerCommand } from './commands/streamer.js';
import { upCommand } from './commands/up.js';
import { addSettings, flagValues } from './settings.js';
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
    const config = loadConfig(process.env, flagValues(cmd.opts()));
    process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
  });
  return cmd;
}

export function buildProgram(): Command {
  const program = new Command('nexus')
    .description(
      'Nexus: GPU telemetry from DCGM exports through an etcd queue into PostgreSQL, served over REST, GraphQL and WebSocket',
    )
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  program.addCommand(upCommand());
  program.addCommand(streamerCommand());
  program.addCommand(collectorCommand());
  program.addCommand(gatewayCommand());
  program.addCommand(migrateCommand());
  program.addCommand(generateCommand());
  program.addCommand(queueCommand());
  program.addCommand(dlqCommand());
  program.addCommand(configCommand());
  return program;
}

async function main(): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`nexus: ${describeError(err)}\n`);
    process.exitCode = isNexusError(err, 'CONFIG_INVALID') ? 2 : 1;
  }
}

await main();
