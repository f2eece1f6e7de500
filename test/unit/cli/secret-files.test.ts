/**
 * Secrets in files (README, "Secrets in files"): every secret setting is read from `<NAME>_FILE`
 * or `--<flag>-file` too, exactly (less one trailing newline); a file that cannot be used is a
 * clear error naming the variable and the path, never the content; both ways at once is an error.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Command } from 'commander';
import {
  SETTINGS,
  loadConfig,
  redactConfig,
  secretFile,
  type SettingKey,
  type SettingSpec,
} from '../../../src/core/config.js';
import { NexusError } from '../../../src/core/errors.js';
import { addSettings, configFrom, isGiven } from '../../../src/cli/settings.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-secrets-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function secret(content: string): string {
  const path = join(dir, `secret-${++n}`);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

/** Loading fails with CONFIG_INVALID, its message matching every pattern. */
function invalid(load: () => unknown, patterns: readonly RegExp[]): string {
  let message = '';
  assert.throws(load, (err: unknown) => {
    assert.ok(err instanceof NexusError, String(err));
    assert.equal(err.code, 'CONFIG_INVALID');
    for (const p of patterns) assert.match(err.message, p);
    message = err.message;
    return true;
  });
  return message;
}

const SECRETS = (Object.entries(SETTINGS) as [SettingKey, SettingSpec][]).filter(
  ([, s]) => s.secret === true && secretFile(s) !== undefined,
);

describe('secrets in files', () => {
  it('has no default database password any more', () => {
    assert.equal(loadConfig({}).dbPassword, '');
    assert.equal(SETTINGS.dbPassword.default, '');
  });

  it('reads every secret setting from <NAME>_FILE, exactly, less one trailing newline', () => {
    assert.ok(SECRETS.length >= 3, 'DB_PASSWORD, DATABASE_URL and ETCD_PASSWORD at least');
    for (const [key, spec] of SECRETS) {
      const file = secretFile(spec);
      assert.ok(file !== undefined);
      assert.equal(file.env, `${spec.env}_FILE`);
      const value = ` s3cret with spaces ${key} `;
      const c = loadConfig({ [file.env]: secret(`${value}\n`) });
      assert.equal(c[key], value, spec.env);
    }
    const c = (text: string): string => loadConfig({ DB_PASSWORD_FILE: secret(text) }).dbPassword;
    assert.equal(c('windows\r\n'), 'windows');
    assert.equal(c('two\n\n'), 'two\n');
    assert.equal(c('none'), 'none');
  });

  it('takes --<flag>-file on the command line, and says so in the help', async () => {
    const cmd = addSettings(new Command('x').exitOverride(), ['database']);
    let config: ReturnType<typeof configFrom> | undefined;
    cmd.action(() => {
      config = configFrom(cmd);
    });
    await cmd.parseAsync(
      [
        '--db-password-file',
        secret('from-flag\n'),
        '--database-url-file',
        secret('postgres://u:p@h/d\n'),
      ],
      { from: 'user' },
    );
    assert.equal(config?.dbPassword, 'from-flag');
    assert.equal(config.databaseUrl, 'postgres://u:p@h/d');
    assert.match(
      cmd.helpInformation(),
      /--db-password-file <path>\s+DB_PASSWORD read from this file[^-]*env\s+DB_PASSWORD_FILE/,
    );
  });

  it('counts a secret given in a file as given (nexus up picks PostgreSQL for DATABASE_URL_FILE)', () => {
    const cmd = addSettings(new Command('x'), ['database']);
    const before = process.env.DATABASE_URL_FILE;
    try {
      delete process.env.DATABASE_URL_FILE;
      if ((process.env.DATABASE_URL ?? '') === '') assert.equal(isGiven(cmd, 'databaseUrl'), false);
      process.env.DATABASE_URL_FILE = secret('postgres://u@h/d\n');
      assert.equal(isGiven(cmd, 'databaseUrl'), true);
    } finally {
      if (before === undefined) delete process.env.DATABASE_URL_FILE;
      else process.env.DATABASE_URL_FILE = before;
    }
  });

  it('refuses a secret given both directly and in a file, naming both variables', () => {
    const message = invalid(
      () => loadConfig({ DB_PASSWORD: 'direct-value', DB_PASSWORD_FILE: secret('file-value\n') }),
      [/DB_PASSWORD and DB_PASSWORD_FILE are both set/],
    );
    assert.ok(!message.includes('direct-value') && !message.includes('file-value'));
    invalid(
      () => loadConfig({ DATABASE_URL_FILE: secret('x\n') }, { databaseUrl: 'postgres://a@b/c' }),
      [/DATABASE_URL and DATABASE_URL_FILE are both set/],
    );
  });

  it('says which variable names a file it cannot use, and where, never what a file holds', () => {
    const missing = join(dir, 'no-such-file');
    invalid(
      () => loadConfig({ DB_PASSWORD_FILE: missing }),
      [/DB_PASSWORD_FILE: cannot read/, new RegExp(missing), /ENOENT/],
    );
    invalid(
      () => loadConfig({ ETCD_PASSWORD_FILE: dir }),
      [/ETCD_PASSWORD_FILE: cannot read/, /EISDIR/],
    );
    invalid(
      () => loadConfig({ DB_PASSWORD_FILE: secret('\n') }),
      [/DB_PASSWORD_FILE: .* is empty/],
    );
    if (userInfo().uid !== 0) {
      // root reads any file: an unreadable one can only be tried as another user.
      const locked = secret('locked-secret');
      chmodSync(locked, 0o000);
      const m = invalid(() => loadConfig({ DB_PASSWORD_FILE: locked }), [/EACCES/]);
      assert.ok(!m.includes('locked-secret'));
    }
  });

  it('masks a secret read from a file like any other, and has no _FILE for a setting that is a path', () => {
    const r = redactConfig(loadConfig({ DB_PASSWORD_FILE: secret('masked-value\n') }));
    assert.equal(r.DB_PASSWORD, '***');
    assert.ok(!JSON.stringify(r).includes('masked-value'));
    assert.equal(secretFile(SETTINGS.etcdKeyFile), undefined);
  });
});
