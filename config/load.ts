/**
 * Configuration loading: defaults, a JSON file, then environment overrides.
 *
 * Order (later wins): built-in defaults (the embedded demo model) → the JSON file named by
 * `--config FILE` or `OPENLORA_CONFIG` → environment (`HOST`/`OPENLORA_HOST`,
 * `PORT`/`OPENLORA_PORT`, `OPENLORA_LOG_LEVEL`). Errors name the bad field and its source.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigSchema, type Config, type ConfigInput } from './schema.ts';

/** Repository root (config/ is one level below it). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Thrown for any invalid configuration; `message` names the field and where it came from. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** The configuration used when no file is given: the demo model and its four adapters. */
export function defaultConfigInput(): ConfigInput {
  return {
    models: [
      {
        name: 'tiny-shakespeare',
        path: path.join(REPO_ROOT, 'examples/models/tiny-shakespeare'),
        adapterDirs: [path.join(REPO_ROOT, 'examples/adapters')],
      },
    ],
  };
}

/**
 * Validate a configuration object.
 * @param input Raw object (from JSON or code).
 * @param source Where it came from, for messages (a file path or "options").
 * @param baseDir Folder that relative model/adapter paths are resolved against.
 * @throws ConfigError naming the first bad field, e.g. `config.json: engine.maxLoras: expected number, received string`.
 */
export function parseConfig(input: unknown, source = 'options', baseDir = process.cwd()): Config {
  const r = ConfigSchema.safeParse(input);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `${source}: ${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration\n  ${lines.join('\n  ')}`);
  }
  const cfg = r.data;
  const abs = (p: string) => path.resolve(baseDir, p);
  for (const m of cfg.models) {
    m.path = abs(m.path);
    m.adapterDirs = m.adapterDirs.map(abs);
    for (const a of m.adapters) if (!isRemoteAdapterPath(a.path)) a.path = abs(a.path);
  }
  if (cfg.mergeDir) cfg.mergeDir = abs(cfg.mergeDir);
  cfg.adapterRoots = cfg.adapterRoots.map(abs);
  if (cfg.adapterCache.dir) cfg.adapterCache.dir = abs(cfg.adapterCache.dir);
  if (cfg.adapterSources.hfCacheDir) cfg.adapterSources.hfCacheDir = abs(cfg.adapterSources.hfCacheDir);
  for (const [name, c] of Object.entries(cfg.compositions)) {
    const base = cfg.models.find((m) => m.name === c.base);
    if (!base) throw new ConfigError(`${source}: compositions.${name}.base: no model named "${c.base}"`);
    if (cfg.models.some((m) => m.name === name)) throw new ConfigError(`${source}: compositions.${name}: the name of a model`);
  }
  const names = new Set<string>();
  cfg.models.forEach((m, i) => {
    if (names.has(m.name)) throw new ConfigError(`${source}: models.${i}.name: duplicate model name "${m.name}"`);
    names.add(m.name);
  });
  return cfg;
}

/** Adapter `path`s that are not local folders: http(s) URLs and `hub:org/name[@rev]`. */
export function isRemoteAdapterPath(p: string): boolean {
  return /^https?:\/\//i.test(p) || p.startsWith('hub:');
}

/** Adapter knobs from the environment (OPENLORA_MAX_LORAS, _MAX_CPU_LORAS, _MAX_LORA_RANK, _ADAPTER_DIRS, _ALLOW_RUNTIME_LORA_UPDATING) and OPENLORA_CONSOLE. */
function applyAdapterEnv(input: Record<string, unknown>, env: NodeJS.ProcessEnv): void {
  const obj = (k: string) => (input[k] = { ...((input[k] as object | undefined) ?? {}) }) as Record<string, unknown>;
  const maxLoras = envInt(env, ['OPENLORA_MAX_LORAS']);
  if (maxLoras !== undefined) obj('engine').maxLoras = maxLoras;
  const maxRank = envInt(env, ['OPENLORA_MAX_LORA_RANK']);
  if (maxRank !== undefined) obj('engine').maxLoraRank = maxRank;
  const maxCpu = envInt(env, ['OPENLORA_MAX_CPU_LORAS']);
  if (maxCpu !== undefined) obj('adapterCache').maxCpuLoras = maxCpu;
  const dirs = env.OPENLORA_ADAPTER_DIRS;
  if (dirs) {
    // Applies to the first (usually only) model; relative folders are taken from the working directory.
    const models = input.models as Array<Record<string, unknown>>;
    if (Array.isArray(models) && models[0]) models[0] = { ...models[0], adapterDirs: dirs.split(':').filter(Boolean).map((d) => path.resolve(d)) };
  }
  const allow = envBool(env, 'OPENLORA_ALLOW_RUNTIME_LORA_UPDATING');
  if (allow !== undefined) input.allowRuntimeLoraUpdating = allow;
  const console = envBool(env, 'OPENLORA_CONSOLE');
  if (console !== undefined) input.console = console;
}

/** A 1/0/true/false environment variable; undefined when unset or empty. */
function envBool(env: NodeJS.ProcessEnv, key: string): boolean | undefined {
  const v = env[key];
  if (v === undefined || v === '') return undefined;
  if (!/^(1|0|true|false)$/i.test(v)) throw new ConfigError(`environment: ${key}: expected 1/0/true/false, received "${v}"`);
  return /^(1|true)$/i.test(v);
}

function envInt(env: NodeJS.ProcessEnv, keys: string[]): number | undefined {
  for (const k of keys) {
    const v = env[k];
    if (v === undefined || v === '') continue;
    if (!/^\d+$/.test(v)) throw new ConfigError(`environment: ${k}: expected an integer, received "${v}"`);
    return Number(v);
  }
  return undefined;
}

/**
 * Load the configuration for a process: file (from argv `--config FILE` / `--config=FILE` or
 * `OPENLORA_CONFIG`), else the demo defaults, then environment overrides.
 * @throws ConfigError for an unreadable file, invalid JSON, or an invalid field.
 */
export function loadConfig(argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Config {
  let file: string | undefined = env.OPENLORA_CONFIG || undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--config') {
      file = argv[i + 1];
      if (!file) throw new ConfigError('--config needs a file path');
    } else if (argv[i].startsWith('--config=')) file = argv[i].slice('--config='.length);
  }
  let input: Record<string, unknown>;
  let source = 'defaults';
  let baseDir = REPO_ROOT;
  if (file) {
    source = file;
    baseDir = path.dirname(path.resolve(file));
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    try {
      input = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw new ConfigError(`${file}: (root): expected a JSON object`);
    if (input.models === undefined) input.models = defaultConfigInput().models;
  } else {
    input = defaultConfigInput() as Record<string, unknown>;
  }
  const host = env.OPENLORA_HOST || env.HOST;
  if (host) input.host = host;
  const port = envInt(env, ['OPENLORA_PORT', 'PORT']);
  if (port !== undefined) {
    // NOTE(why): checked here, so the error names the variable rather than the defaults' `port`.
    const key = env.OPENLORA_PORT ? 'OPENLORA_PORT' : 'PORT';
    if (port > 65535) throw new ConfigError(`environment: ${key}: expected a port number 0..65535, received "${env[key]}"`);
    input.port = port;
  }
  if (env.OPENLORA_LOG_LEVEL) input.logLevel = env.OPENLORA_LOG_LEVEL;
  applyAdapterEnv(input, env);
  return parseConfig(input, source, baseDir);
}
