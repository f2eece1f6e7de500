import type { Command } from 'commander';
import {
  SETTINGS,
  loadConfig,
  type Config,
  type SettingKey,
  type SettingSpec,
} from '../core/config.js';

export type Group = SettingSpec['group'];

/**
 * Adds a `--flag <value>` for every setting of the given groups (help shows env var and default).
 * `defaults` names the defaults this command has of its own, as its help should show them.
 */
export function addSettings(
  cmd: Command,
  groups: readonly Group[],
  defaults: Partial<Record<SettingKey, string>> = {},
): Command {
  for (const [key, spec] of Object.entries(SETTINGS) as [SettingKey, SettingSpec][]) {
    if (!groups.includes(spec.group)) continue;
    const choices = spec.choices === undefined ? '' : ` [${spec.choices.join('|')}]`;
    const shown = defaults[key] ?? spec.default;
    const def =
      shown === undefined || shown === '' || spec.secret === true ? '' : ` (default: ${shown})`;
    cmd.option(`--${spec.flag} <value>`, `${spec.help}${choices}. env ${spec.env}${def}`);
  }
  return cmd;
}

/** True when the setting was given: as a flag, or as a non-empty environment variable. */
export function isGiven(cmd: Command, key: SettingKey): boolean {
  return cmd.getOptionValue(key) !== undefined || (process.env[SETTINGS[key].env] ?? '') !== '';
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
