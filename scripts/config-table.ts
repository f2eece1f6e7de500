/** The configuration reference (every setting) as a Markdown table, for README.md. */
import { SETTINGS, type SettingSpec } from '../src/core/config.js';

export function configTable(): string {
  const rows = (Object.values(SETTINGS) as SettingSpec[]).map((s) => {
    const def = s.default === undefined || s.default === '' ? '' : `\`${s.default}\``;
    const choices = s.choices === undefined ? '' : ` (${s.choices.join(', ')})`;
    return `| \`${s.env}\` | \`--${s.flag}\` | ${def} | ${s.help}${choices} |`;
  });
  return ['| variable | flag | default | meaning |', '| --- | --- | --- | --- |', ...rows].join(
    '\n',
  );
}
