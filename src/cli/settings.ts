import type { Command } from 'commander';
import {
  SETTINGS,
  loadConfig,
  type Config,
  type SettingKey,
  type SettingSpec,
} from '../core/config.js';

export type Group = SettingSpec['group'];

/** Adds a `--flag <value>` for every setting of the given groups (help shows env var and default). */
export function addSettings(cmd: Command, groups: readonly Group[]): Command {
  for (const spec of Object.values(SETTINGS) as SettingSpec[]) {
    if (!groups.includes(spec.group)) continue;
    const choices = spec.choices === undefined ? '' : ` [${spec.choices.join('|')}]`;
    const def =
      spec.default === undefined || spec.default === '' || spec.secret === true
        ? ''
        : ` (default: ${spec.default})`;
    cmd.option(`--${spec.flag} <value>`, `${spec.help}${choices}. env ${spec.env}${def}`);
  }
  return cmd;
}

/** Reads the parsed flag values of a command into setting keys. */
export function flagValues(opts: Record<string, unknown>): Partial<Record<SettingKey, string>> {
  const out: Partial<Record<SettingKey, string>> = {};
  for (const key of Object.keys(SETTINGS) as SettingKey[]) {
    const v = opts[key];
    if (typeof v === 'string') out[key] = v;
  }
  return out;
}

export function configFrom(cmd: Command, extra: Partial<Record<SettingKey, string>> = {}): Config {
  return loadConfig(process.env, { ...flagValues(cmd.opts()), ...extra });
}
