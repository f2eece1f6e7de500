/** The configuration reference (every setting) as a Markdown table, for README.md. */
import { SETTINGS, secretFile, type SettingSpec } from '../src/core/config.js';

export function configTable(): string {
  const rows = (Object.values(SETTINGS) as SettingSpec[]).map((s) => {
    const def = s.default === undefined || s.default === '' ? '' : `\`${s.default}\``;
    const choices = s.choices === undefined ? '' : ` (${s.choices.join(', ')})`;
    // A secret readable from a file (README, "Secrets in files") names its file variable too.
    const file = secretFile(s);
    const variable = file === undefined ? `\`${s.env}\`` : `\`${s.env}\`, \`${file.env}\``;
    const flag = file === undefined ? `\`--${s.flag}\`` : `\`--${s.flag}\`, \`--${file.flag}\``;
    return `| ${variable} | ${flag} | ${def} | ${s.help}${choices} |`;
  });
  return ['| variable | flag | default | meaning |', '| --- | --- | --- | --- |', ...rows].join(
    '\n',
  );
}
