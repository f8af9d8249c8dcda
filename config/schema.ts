/**
 * The one schema for every openlora option, with defaults.
 *
 * Loaded from a JSON file (`--config FILE` or `OPENLORA_CONFIG`) and environment overrides by
 * `config/load.ts`. Relative paths in a config file are resolved against that file's folder.
 */
import { z } from 'zod';
import { CompositionConfigSchema } from '../adapters/composition.ts';

/** An adapter named explicitly: `{name, path}` (path = folder with adapter_config.json). */
export const AdapterEntrySchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'adapter names use letters, digits, ".", "_" and "-"'),
  path: z.string().min(1),
});

/** One served base model and where its adapters come from. */
export const ModelEntrySchema = z.strictObject({
  /** Name clients put in `model` (before the optional `:ADAPTER`). */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._\/-]*$/, 'model names use letters, digits, ".", "_", "/" and "-"'),
  /** Hugging Face model folder: config.json, safetensors, tokenizer.json, tokenizer_config.json. */
  path: z.string().min(1),
  /** Folders scanned at start: each sub-folder holding adapter_config.json is one adapter. */
  adapterDirs: z.array(z.string().min(1)).default([]),
  /** Adapters named one by one. */
  adapters: z.array(AdapterEntrySchema).default([]),
});

/** Engine knobs (native/types.ts EngineOptions). */
export const EngineSchema = z.strictObject({
  /** "auto" picks CUDA only when a device answers; else CPU, with a log line saying why. */
  backend: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  /** CPU compute threads; 0 = every core. */
  threads: z.number().int().min(0).max(1024).default(0),
  /** Adapter slots resident in the engine at once. */
  maxLoras: z.number().int().min(1).max(4096).default(8),
  /** Largest LoRA rank a slot can hold. */
  maxLoraRank: z.number().int().min(1).max(1024).default(64),
  /** Most sequences in one engine step. */
  maxNumSeqs: z.number().int().min(1).max(4096).default(64),
});

/** The whole configuration. */
export const ConfigSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Largest accepted request body (express/body-parser size string). */
  bodyLimit: z.string().default('4mb'),
  models: z.array(ModelEntrySchema).min(1, 'at least one model is needed'),
  engine: EngineSchema.default(() => EngineSchema.parse({})),
  /** Named compositions: `{NAME: {base, adapters: [{name, weight}], merge: {strategy, ...}}}`. */
  compositions: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'composition names use letters, digits, ".", "_" and "-"'), CompositionConfigSchema).default({}),
  /** Folder materialised merges are written to (default: the OS temp folder). */
  mergeDir: z.string().min(1).optional(),
});

export type Config = z.output<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type ModelEntry = z.output<typeof ModelEntrySchema>;
