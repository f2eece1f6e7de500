/**
 * The container image (Dockerfile, .dockerignore, `make image`), tested without a container
 * engine: the Dockerfile's instructions are parsed and checked (stages, pinned bases, a non-root
 * user, the entrypoint, OCI labels, no URL in ADD, no secret in ENV), every path it copies exists
 * after the build, and the runtime stage's tree is laid out in a scratch directory (the paths it
 * copies, then its own `npm ci --omit=dev`): from there `nexus --version`, `--help` and `migrate`
 * against PostgreSQL run, so the production dependencies are all the image needs.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../helpers/child.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

interface Instruction {
  readonly line: number;
  readonly cmd: string;
  readonly args: string;
}

interface Stage {
  readonly name: string;
  readonly from: string;
  readonly body: Instruction[];
}

/** The instructions of a Dockerfile: comments dropped, continuation lines joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1;
    let logical = (lines[i] ?? '').trim();
    if (logical === '' || logical.startsWith('#')) continue;
    while (logical.endsWith('\\')) {
      logical = logical.slice(0, -1);
      i++;
      const next = (lines[i] ?? '').trim();
      if (!next.startsWith('#')) logical += ` ${next}`;
    }
    const m = /^([A-Za-z]+)\s+(.*)$/s.exec(logical);
    assert.ok(m, `Dockerfile line ${first}: not an instruction: ${logical}`);
    out.push({ line: first, cmd: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').trim() });
  }
  return out;
}

/** The stages, FROM's image with the global ARGs' defaults substituted. */
function stagesOf(instructions: Instruction[]): Stage[] {
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.cmd === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      assert.ok(m, `FROM on line ${ins.line}: ${ins.args}`);
      const from = (m[1] ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => {
        const v = args.get(a ?? b ?? '');
        assert.ok(v !== undefined, `FROM on line ${ins.line} uses an ARG without a default`);
        return v;
      });
      stages.push({ name: m[2] ?? String(stages.length), from, body: [] });
    } else if (stages.length === 0) {
      assert.equal(ins.cmd, 'ARG', `only ARG may come before the first FROM (line ${ins.line})`);
      const [k = '', v] = ins.args.split('=', 2);
      if (v !== undefined) args.set(k, v);
    } else {
      stages.at(-1)?.body.push(ins);
    }
  }
  return stages;
}

/** The options (--from=..., --chown=...) and paths of a COPY; the last path is the destination. */
function copyOf(ins: Instruction): { from?: string; sources: string[]; dest: string } {
  const words = ins.args.split(/\s+/);
  const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
  const paths = words.filter((w) => !w.startsWith('--'));
  assert.ok(paths.length >= 2, `COPY on line ${ins.line} needs a source and a destination`);
  return {
    ...(from === undefined ? {} : { from }),
    sources: paths.slice(0, -1),
    dest: paths.at(-1) ?? '',
  };
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const instructions = parseDockerfile(dockerfile);
const stages = stagesOf(instructions);
const runtime = stages.at(-1);
const build = stages.find((s) => s.name === 'build');

function all(stage: Stage | undefined, cmd: string): Instruction[] {
  return (stage?.body ?? []).filter((i) => i.cmd === cmd);
}

/** The working directory of a stage (its last WORKDIR). */
function workdir(stage: Stage): string {
  return all(stage, 'WORKDIR').at(-1)?.args ?? '/';
}

/** A path in the build stage (absolute, or relative to its WORKDIR) as a path in this checkout. */
function inCheckout(buildStage: Stage, path: string): string {
  const wd = workdir(buildStage).replace(/\/$/, '');
  const rel = path.startsWith('/') ? path.slice(wd.length + 1) : path;
  assert.ok(!path.startsWith('/') || path.startsWith(`${wd}/`), `${path} is outside ${wd}`);
  return join(ROOT, rel);
}

describe('Dockerfile', () => {
  it('has a build stage and a runtime stage, both on a Node 20 slim base pinned by tag', () => {
    assert.ok(stages.length >= 2, `${stages.length} stage(s)`);
    assert.ok(build, 'a stage named build');
    for (const s of stages) {
      assert.match(s.from, /^node:20\.\d+\.\d+-[a-z]+-slim$/, `stage ${s.name} is FROM ${s.from}`);
    }
  });

  it('builds with npm ci and npm run build, and installs only the production dependencies to run', () => {
    const buildRuns = all(build, 'RUN').map((i) => i.args);
    assert.ok(
      buildRuns.some((r) => /^npm ci\b/.test(r) && !r.includes('--omit')),
      buildRuns.join('\n'),
    );
    assert.ok(buildRuns.includes('npm run build'), buildRuns.join('\n'));
    const runs = all(runtime, 'RUN').map((i) => i.args);
    assert.ok(
      runs.some((r) => /\bnpm ci --omit=dev\b/.test(r)),
      runs.join('\n'),
    );
    assert.ok(!runs.some((r) => /\bnpm (run build|install)\b/.test(r)), runs.join('\n'));
  });

  it('runs as uid 10001 with nexus as the entrypoint, the gateway port exposed and OCI labels', () => {
    assert.ok(runtime);
    const users = all(runtime, 'USER');
    assert.equal(users.at(-1)?.args, '10001:10001');
    // USER comes after every RUN and COPY: nothing written after it belongs to root by accident.
    const last = (cmd: string) => Math.max(...all(runtime, cmd).map((i) => i.line));
    assert.ok((users.at(-1)?.line ?? 0) > Math.max(last('RUN'), last('COPY')));
    assert.deepEqual(JSON.parse(all(runtime, 'ENTRYPOINT').at(-1)?.args ?? 'null'), [
      'node',
      'bin/nexus.js',
    ]);
    assert.deepEqual(JSON.parse(all(runtime, 'CMD').at(-1)?.args ?? 'null'), ['up']);
    assert.deepEqual(
      all(runtime, 'EXPOSE').map((i) => i.args),
      ['8080'],
    );
    const labels = all(runtime, 'LABEL')
      .map((i) => i.args)
      .join(' ');
    for (const key of ['title', 'description', 'version', 'revision', 'licenses']) {
      assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${key}="[^"]+"`), key);
    }
    const license = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { license: string }
    ).license;
    assert.ok(labels.includes(`org.opencontainers.image.licenses="${license}"`), labels);
  });

  it('fetches nothing by URL and puts no secret in ENV, ARG or LABEL', () => {
    for (const ins of instructions) {
      assert.notEqual(ins.cmd, 'ADD', `line ${ins.line}: ADD (use COPY)`);
      if (['ENV', 'ARG', 'LABEL'].includes(ins.cmd)) {
        assert.doesNotMatch(
          ins.args,
          /(PASSWORD|SECRET|TOKEN|PRIVATE|_KEY\b|DATABASE_URL=)/i,
          `line ${ins.line}: ${ins.cmd} ${ins.args}`,
        );
      }
      if (ins.cmd === 'RUN') assert.doesNotMatch(ins.args, /\b(curl|wget)\b/, `line ${ins.line}`);
    }
  });

  it('copies only paths that exist after the build and that .dockerignore lets in', () => {
    assert.ok(build && runtime);
    execFileSync('make', ['-s', 'build-nexus'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const ignored = dockerignore();
    let copies = 0;
    for (const stage of stages) {
      for (const ins of all(stage, 'COPY')) {
        const { from, sources } = copyOf(ins);
        for (const src of sources) {
          copies++;
          if (from === undefined) {
            const top = src.replace(/\/$/, '').split('/')[0] ?? '';
            assert.ok(
              existsSync(join(ROOT, src)),
              `line ${ins.line}: ${src} is not in the checkout`,
            );
            assert.ok(!ignored.includes(top), `line ${ins.line}: ${src} is in .dockerignore`);
          } else {
            assert.equal(from, 'build', `line ${ins.line}`);
            assert.ok(
              existsSync(inCheckout(build, src)),
              `line ${ins.line}: the build makes no ${src}`,
            );
          }
        }
      }
    }
    assert.ok(copies >= 5, `${copies} COPY sources`);
    // What nexus reads at run time from dist/: the CLI, the migrations, the dashboard, the PGlite template.
    for (const path of [
      'dist/cli/main.js',
      'dist/store/sql/001_schema.sql',
      'dist/dashboard/index.html',
      'dist/store/pglite/template.tar.gz',
    ]) {
      assert.ok(existsSync(join(ROOT, path)), path);
    }
  });
});

/** The patterns of .dockerignore (comments and blank lines dropped). */
function dockerignore(): string[] {
  return readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

describe('.dockerignore', () => {
  it('keeps dependencies, build output, local data, results and git out of the build context', () => {
    const patterns = dockerignore();
    for (const p of ['node_modules', '.data', 'dist', 'test-results', 'coverage', '.git']) {
      assert.ok(patterns.includes(p), `${p} is not ignored`);
    }
  });
});

describe('the runtime stage as a tree', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-image-'));
  const app = join(dir, 'app');
  const data = join(dir, 'data');
  const pg = sharedPostgres();
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await (await pg).release();
  });

  /** nexus from the tree, as the image's ENTRYPOINT runs it, with the image's ENV. */
  function nexus(args: string[], env: NodeJS.ProcessEnv = {}) {
    const res = spawnSync(process.execPath, ['bin/nexus.js', ...args], {
      cwd: app,
      encoding: 'utf8',
      timeout: 60_000,
      env: { PATH: process.env.PATH, HOME: dir, ...imageEnv(), NEXUS_DATA_DIR: data, ...env },
    });
    return { status: res.status, stdout: res.stdout, stderr: res.stderr };
  }

  before(() => {
    assert.ok(build && runtime);
    execFileSync('make', ['-s', 'build-nexus'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    // The runtime stage in order: its COPY instructions (from the checkout or the build stage) and
    // its RUN npm ci, each run in the tree.
    for (const ins of runtime.body) {
      if (ins.cmd === 'COPY') {
        const { from, sources, dest } = copyOf(ins);
        for (const src of sources) {
          const origin = from === undefined ? join(ROOT, src) : inCheckout(build, src);
          const target =
            dest.endsWith('/') && !src.endsWith('/') ? join(app, dest, src) : join(app, dest);
          cpSync(origin, target, { recursive: true });
        }
      } else if (ins.cmd === 'RUN' && ins.args.startsWith('npm ci')) {
        const npmCi = (ins.args.split('&&')[0] ?? '').trim().split(/\s+/);
        execFileSync('npm', npmCi.slice(1), {
          cwd: app,
          stdio: ['ignore', 'ignore', 'inherit'],
          env: { ...process.env, NODE_ENV: 'production' },
          timeout: 300_000,
        });
      }
    }
  });

  it('holds the production dependencies only', () => {
    const pkg = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    for (const name of Object.keys(pkg.dependencies)) {
      assert.ok(existsSync(join(app, 'node_modules', name, 'package.json')), `${name} is missing`);
    }
    // What the lock file marks dev (only dev dependencies need it; @types/node and graphql-ws
    // are also wanted by production ones, so they stay) is not installed.
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const dev = Object.entries(lock.packages).filter(([path, p]) => p.dev === true && path !== '');
    assert.ok(dev.length > 100, `${dev.length} dev packages in the lock file`);
    for (const [path] of dev) assert.ok(!existsSync(join(app, path)), `${path} is installed`);
    for (const tool of ['typescript', 'tsx', 'esbuild', 'eslint', 'c8']) {
      assert.ok(!existsSync(join(app, 'node_modules', tool)), tool);
    }
    assert.ok(!existsSync(join(app, 'src')), 'the sources are not in the image');
  });

  it('answers nexus --version and --help', () => {
    const version = nexus(['--version']);
    assert.equal(version.status, 0, version.stderr);
    const expected = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    ).version;
    assert.equal(version.stdout.trim(), expected);
    const help = nexus(['--help']);
    assert.equal(help.status, 0, help.stderr);
    for (const cmd of [
      'up',
      'streamer',
      'collector',
      'gateway',
      'migrate',
      'etcd-roles',
      'token',
    ]) {
      assert.match(help.stdout, new RegExp(`^  ${cmd}\\b`, 'm'), `${cmd} in --help`);
    }
  });

  it('applies the migrations to PostgreSQL with nexus migrate, and again with nothing to do', async () => {
    const url = await (await pg).server.createDatabase(uniqueDatabase('image'));
    const first = nexus(['migrate'], { DATABASE_URL: url, LOG_LEVEL: 'info' });
    assert.equal(first.status, 0, first.stderr + first.stdout);
    const applied = /schema at version (\d+) \((\d+) migration\(s\) applied now\)/.exec(
      first.stdout + first.stderr,
    );
    assert.ok(applied, first.stdout + first.stderr);
    assert.ok(Number(applied[2]) >= 1);
    assert.equal(applied[1], applied[2], 'every migration applied on an empty database');
    const again = nexus(['migrate'], { DATABASE_URL: url });
    assert.equal(again.status, 0, again.stderr);
    assert.match(
      again.stdout + again.stderr,
      new RegExp(`schema at version ${applied[1]} \\(0 migration`),
    );
  });
});

/** The runtime stage's ENV (KEY=value pairs), as a container gets it. */
function imageEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const ins of all(runtime, 'ENV')) {
    for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) {
      out[m[1] ?? ''] = (m[2] ?? '').replace(/^"|"$/g, '');
    }
  }
  return out;
}
