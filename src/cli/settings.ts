import type { Command } from 'commander';
import {
  SETTINGS,
  loadConfig,
  secretFile,
  type Config,
  type SettingKey,
  type SettingSpec,
} from '../core/config.js';

export type Group = SettingSpec['group'];

/**
 * Adds a `--flag <value>` for every setting of the given groups (help shows env var and default),
 * and for a secret also `--flag-file <path>` (README, "Secrets in files").
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
    const file = secretFile(spec);
    if (file !== undefined) {
      cmd.option(
        `--${file.flag} <path>`,
        `${spec.env} read from this file (its content less one trailing newline). env ${file.env}`,
      );
    }
  }
  return cmd;
}

/** The commander option key of a secret's `--flag-file` (`--db-password-file`: dbPasswordFile). */
const fileOption = (key: SettingKey): string => `${key}File`;

/**
 * True when the setting was given: as a flag, or as a non-empty environment variable (a secret
 * also from its file).
 */
export function isGiven(cmd: Command, key: SettingKey): boolean {
  const spec: SettingSpec = SETTINGS[key];
  const file = secretFile(spec);
  return (
    cmd.getOptionValue(key) !== undefined ||
    (process.env[spec.env] ?? '') !== '' ||
    (file !== undefined &&
      (cmd.getOptionValue(fileOption(key)) !== undefined || (process.env[file.env] ?? '') !== ''))
  );
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

/** Reads the parsed `--flag-file` values of a command, by the key of the secret they hold. */
export function fileFlagValues(opts: Record<string, unknown>): Partial<Record<SettingKey, string>> {
  const out: Partial<Record<SettingKey, string>> = {};
  for (const [key, spec] of Object.entries(SETTINGS) as [SettingKey, SettingSpec][]) {
    const v = opts[fileOption(key)];
    if (secretFile(spec) !== undefined && typeof v === 'string') out[key] = v;
  }
  return out;
}

export function configFrom(cmd: Command, extra: Partial<Record<SettingKey, string>> = {}): Config {
  const opts = cmd.opts();
  return loadConfig(
    process.env,
    { ...flagValues(opts), ...extra },
    { flags: fileFlagValues(opts) },
  );
}
