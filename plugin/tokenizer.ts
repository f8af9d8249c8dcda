/**
 * Tokenizer and chat template of one base model.
 *
 * Loads a Hugging Face model folder's `tokenizer.json` + `tokenizer_config.json` with
 * `@huggingface/tokenizers`, renders `chat_template` with `@huggingface/jinja`, and works out
 * the stop token ids from `config.json` / `generation_config.json`, as transformers does.
 *
 * NOTE: encoding follows HF. A rendered chat prompt already holds the BOS token (the template
 * writes `bos_token`), so it is encoded WITHOUT special tokens; a raw completion prompt is
 * encoded WITH them (the post-processor prepends BOS when `add_bos_token`).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { cutAfterFinalMessage, Placeholders, SpecialTokenMatcher, splitSpecial, type PromptPiece } from './chat-encoding.ts';
import { ContextLengthError, InvalidRequestError } from './errors.ts';
import { jsonDepth, MAX_JSON_DEPTH } from './json-depth.ts';
import { checkRenderOptions, TEMPLATE_TOKENS, type ChatRenderOptions } from './template-kwargs.ts';
import { buildTokenBytes } from './token-bytes.ts';
import { buildXGrammarVocab, type XGrammarVocab } from './structured/vocab.ts';

/** One text part of a message's content array (other part types are refused by the schema). */
export interface TextPart {
  type: 'text';
  text: string;
}

/** One tool call of an assistant message (`arguments` is the JSON text the model wrote). */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A chat message as the OpenAI API sends it (only the fields the template needs). */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: string | TextPart[] | null;
  name?: string;
  tool_call_id?: string;
  tool_calls?: ToolCall[] | null;
}

/** What `loadTokenizer` reads; every file but tokenizer.json is optional. */
export interface TokenizerFiles {
  tokenizer: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  config?: Record<string, unknown>;
  generationConfig?: Record<string, unknown>;
  /**
   * Text of the folder's `chat_template.jinja`. When present it takes precedence over
   * tokenizer_config.json's `chat_template`, as in transformers (`PreTrainedTokenizerBase.
   * _from_pretrained`: the file's template "clobbers any template in the config").
   */
  chatTemplate?: string;
}

export type { ChatRenderOptions } from './template-kwargs.ts';

/** A token string from tokenizer_config: either a plain string or a serialized AddedToken. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

/** `eos_token_id` as written in a config: a number, an array of numbers, or absent. */
function idList(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** Pick the default template: `chat_template` may be a string or a list of `{name, template}`. */
function pickTemplate(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as Array<{ name?: string; template?: string }>;
    return (named.find((t) => t.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}

/** Flatten OpenAI message content (string, text parts or null) to one string; parts join with "\n" as vLLM does. */
export function contentText(content: ChatMessage['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join('\n');
}

/** An added token as tokenizer.json writes it. */
interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
  normalized?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
}

/**
 * A view of `tok` that parses no special tokens (HF's `split_special_tokens=True`); non-special
 * added tokens are still split out, as HF does.
 *
 * NOTE(why): @huggingface/tokenizers 0.2.0 has no such option, and a second Tokenizer would
 * double a 128k vocabulary's memory and load time. So this shares `tok`'s model and replaces
 * three private fields of the pinned version (`splitter_unnormalized`, `splitter_normalized`,
 * `added_tokens_map`) with ones that hold only the non-special added tokens;
 * test/plugin/chat-encoding.test.ts fails if an upgrade changes them.
 */
function plainView(tok: Tokenizer, added: AddedTokenJson[]): Tokenizer {
  const inner = tok as unknown as { added_tokens_map: Map<string, unknown>; normalizer: ((s: string) => string) | null };
  if (!(inner.added_tokens_map instanceof Map)) throw new Error('@huggingface/tokenizers changed: no added_tokens_map');
  const map = new Map<string, unknown>();
  const raw: string[] = [];
  const normalized: string[] = [];
  for (const t of added.filter((a) => !a.special)) {
    const token = inner.added_tokens_map.get(t.content);
    map.set(t.content, token);
    if ((t.normalized ?? true) && inner.normalizer) {
      const n = inner.normalizer(t.content);
      normalized.push(n);
      map.set(n, token);
    } else {
      raw.push(t.content);
    }
  }
  const splitter = (words: string[]) => new SpecialTokenMatcher(words.map((content, id) => ({ content, id, lstrip: false, rstrip: false })));
  return Object.assign(Object.create(tok) as Tokenizer, {
    splitter_unnormalized: splitter(raw),
    splitter_normalized: splitter(normalized),
    added_tokens_map: map,
  });
}

/** Apply `f` to every string value in a JSON value and `key` (default `f`) to every object key. */
function mapStrings(v: unknown, f: (s: string) => string, key: (s: string) => string = f): unknown {
  if (typeof v === 'string') return f(v);
  if (Array.isArray(v)) return v.map((x) => mapStrings(x, f, key));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [key(k), mapStrings(x, f, key)]));
  return v;
}

/** Tool-call arguments for a template: the parsed JSON object when they are one (as vLLM passes them), else the text. */
function toolArguments(text: string): unknown {
  try {
    const v: unknown = JSON.parse(text);
    // Deeper than any schema may be (json-depth.ts): the text, not a tree to walk recursively.
    if (v && typeof v === 'object' && !Array.isArray(v) && jsonDepth(v, MAX_JSON_DEPTH) <= MAX_JSON_DEPTH) return v;
  } catch {
    // not JSON: the template gets the text
  }
  return text;
}

/**
 * A message as the template sees it; every client string is shielded: text (content, name)
 * through `user`, identifiers and JSON (tool_call_id, tool-call ids, names and arguments)
 * through `json` (no whole-word rule: see SpecialTokenMatcher.shield). `developer` becomes
 * `system`; parts are joined.
 */
function templateMessage(m: ChatMessage, user: (s: string) => string, json: (s: string) => string = user): Record<string, unknown> {
  const out: Record<string, unknown> = { role: m.role === 'developer' ? 'system' : m.role, content: user(contentText(m.content)) };
  if (m.name !== undefined) out.name = user(m.name);
  // Call ids and function names are identifiers templates compare (a call's name against the
  // tools' names, which are JSON): shielded as JSON, like the arguments.
  if (m.tool_call_id !== undefined) out.tool_call_id = json(m.tool_call_id);
  if (m.tool_calls && m.tool_calls.length > 0) {
    out.tool_calls = m.tool_calls.map((c) => ({
      id: json(c.id),
      type: 'function',
      function: { name: json(c.function.name), arguments: mapStrings(toolArguments(c.function.arguments), json) },
    }));
  }
  return out;
}

/** Encoder, decoder and chat template of one model. */
export class ModelTokenizer {
  /** Token ids that end generation: config eos_token_id ∪ generation_config eos_token_id. */
  readonly stopTokenIds: number[];
  /** Number of ids (model vocabulary plus added tokens). */
  readonly vocabSize: number;
  /** Ids of special (added, `special: true`) tokens; skipped in output text. */
  readonly specialIds: ReadonlySet<number>;
  /** Whether a chat template is present. */
  readonly hasChatTemplate: boolean;
  /** The chat template's source (the default one when the config lists several). */
  readonly chatTemplate: string | undefined;

  private readonly tok: Tokenizer;
  /** The same tokenizer without its special tokens: encodes text in which none may be parsed. */
  private readonly plain: Tokenizer;
  private readonly specials: SpecialTokenMatcher;
  private readonly templateSource: string;
  private readonly template: Template | undefined;
  private readonly templateVars: Record<string, string>;
  private readonly cleanUp: boolean;
  private readonly bytes: (id: number) => Uint8Array;
  /** The tokenizer.json parts xgrammar's vocabulary needs besides the vocabulary itself. */
  private readonly grammarParts: Record<string, unknown>;

  /** Build from parsed JSON files (see `loadTokenizer` to read them from a folder). */
  constructor(files: TokenizerFiles) {
    const cfg = files.tokenizerConfig;
    this.tok = new Tokenizer(files.tokenizer, cfg);
    this.cleanUp = cfg.clean_up_tokenization_spaces === true;
    this.vocabSize = this.tok.get_vocab(true).size;

    const { decoder, normalizer, pre_tokenizer, added_tokens } = files.tokenizer;
    this.grammarParts = { decoder, normalizer, pre_tokenizer, added_tokens };
    const added = (files.tokenizer.added_tokens ?? []) as AddedTokenJson[];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.plain = plainView(this.tok, added);
    this.specials = new SpecialTokenMatcher(
      added
        .filter((t) => t.special)
        .map((t) => ({ id: t.id, content: t.content, lstrip: t.lstrip === true, rstrip: t.rstrip === true })),
    );

    this.templateVars = {};
    for (const key of TEMPLATE_TOKENS) {
      const s = tokenContent(cfg[key]);
      if (s !== undefined) this.templateVars[key] = s;
    }
    const src = files.chatTemplate ?? pickTemplate(cfg.chat_template);
    this.templateSource = src ?? '';
    this.chatTemplate = src;
    this.template = src === undefined ? undefined : new Template(src);
    this.hasChatTemplate = this.template !== undefined;

    const stops = new Set([...idList(files.config?.eos_token_id), ...idList(files.generationConfig?.eos_token_id)]);
    if (stops.size === 0) {
      const eos = this.templateVars.eos_token === undefined ? undefined : this.tok.token_to_id(this.templateVars.eos_token);
      if (eos !== undefined) stops.add(eos);
    }
    this.stopTokenIds = [...stops].sort((a, b) => a - b);

    const decoderType = (files.tokenizer.decoder as { type?: string } | null | undefined)?.type;
    this.bytes = buildTokenBytes(decoderType, (id) => this.tok.id_to_token(id), this.specialIds);
    let most = 1;
    for (let id = 0; id < this.vocabSize; id++) most = Math.max(most, this.bytes(id).length);
    for (const t of added) most = Math.max(most, Buffer.byteLength(t.content));
    this.maxTokenBytes = most;

    if (decoderType === 'ByteLevel' && !this.cleanUp && added.every((t) => t.special)) {
      const none = new Uint8Array(0);
      const table = Array.from({ length: this.vocabSize }, (_, id) => (this.specialIds.has(id) ? none : this.bytes(id)));
      this.streamBytes = (id) => table[id] ?? none;
    } else {
      this.streamBytes = undefined;
    }
  }

  /** The most UTF-8 bytes of text one token can stand for (longest piece or special token). */
  readonly maxTokenBytes: number;

  /**
   * Set when `decode(ids)` is exactly the lossy UTF-8 decoding of the tokens' bytes, special
   * tokens skipped: a ByteLevel decoder, no clean-up, every added token special. The incremental
   * detokenizer then decodes in O(1) per token (detokenizer.ts).
   */
  readonly streamBytes: ((id: number) => Uint8Array) | undefined;

  /**
   * Encode text; `addSpecialTokens` runs the post-processor (BOS for Llama).
   * @param limit When given, text that cannot fit in `limit.maxTokens` tokens (its UTF-8 length
   *   over `maxTokenBytes` already exceeds it) is refused *before* tokenizing, so one huge prompt
   *   never holds the event loop: ContextLengthError (400) naming `limit.param`.
   */
  encode(text: string, addSpecialTokens: boolean, limit?: { maxTokens: number; param: string }): number[] {
    if (limit) this.checkFits(Buffer.byteLength(text), limit);
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * `ids` (a rendered chat prompt's, from `encodeChat`) with the special tokens the tokenizer's
   * post-processor puts around one sequence (BOS for Llama), as `encode(text, true)` would: vLLM's
   * `add_special_tokens: true` on a chat prompt (a template that writes BOS then gets it twice, as in vLLM).
   * @throws InvalidRequestError (400) naming `add_special_tokens` for a post-processor that does
   *   not keep a sequence whole between its additions (none of the Hugging Face ones).
   */
  addSpecialTokens(ids: number[]): number[] {
    // The additions are what encoding a probe with them adds around its encoding without them.
    const bare = this.tok.encode('a', { add_special_tokens: false }).ids;
    const full = this.tok.encode('a', { add_special_tokens: true }).ids;
    for (let at = 0; at + bare.length <= full.length; at++) {
      if (bare.every((id, i) => full[at + i] === id)) return [...full.slice(0, at), ...ids, ...full.slice(at + bare.length)];
    }
    throw new InvalidRequestError("This tokenizer's post-processor cannot add its special tokens to a chat prompt.", 'add_special_tokens');
  }

  /**
   * Why this tokenizer cannot drive a model whose logits have `modelVocab` rows (config.json
   * `vocab_size`), or undefined when it can: an id of its base vocabulary, a special token or a
   * stop id at or past `modelVocab` (a tokenizer of other weights: every prompt would fail).
   * Non-special added tokens past it are tolerated (they fail only if a prompt contains them).
   */
  vocabMismatch(modelVocab: number): string | undefined {
    let base = -1;
    for (const id of this.tok.get_vocab(false).values()) base = Math.max(base, id);
    if (base >= modelVocab) return `its vocabulary has ids up to ${base}`;
    const special = [...this.specialIds, ...this.stopTokenIds].filter((id) => id >= modelVocab);
    if (special.length > 0) return `its special / stop token ids ${[...new Set(special)].sort((a, b) => a - b).slice(0, 5).join(', ')} are out of range`;
    return undefined;
  }

  /** Whether `id` is one of this tokenizer's ids (`0 <= id < vocabSize`). */
  hasId(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize;
  }

  /**
   * The vocabulary string of each id, as Hugging Face's `convert_ids_to_tokens` (vLLM's
   * `token_strs`): the raw piece (`Ġworld` for byte-level BPE, `▁world` for SentencePiece), a
   * special token's content; ids must be `hasId`.
   */
  tokenStrings(ids: number[]): string[] {
    return ids.map((id) => this.tok.id_to_token(id) ?? '');
  }

  /** Refuse `bytes` of text that cannot fit in `limit.maxTokens` tokens (see `encode`). */
  private checkFits(bytes: number, limit: { maxTokens: number; param: string }): void {
    const atLeast = Math.ceil(bytes / this.maxTokenBytes);
    if (atLeast > limit.maxTokens) {
      throw new ContextLengthError(
        `This model's maximum context length is ${limit.maxTokens} tokens, but the ${limit.param} ${limit.param.endsWith('s') ? 'are' : 'is'} at least ${atLeast} tokens long.`,
        limit.param,
      );
    }
  }

  /** Decode ids to text; special tokens are skipped unless asked for. */
  decode(ids: number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: this.cleanUp });
  }

  /**
   * The vocabulary xgrammar needs for this model (structured/vocab.ts), with the model's stop ids.
   * @param vocabSize The model's logits size (config `vocab_size`), >= this tokenizer's ids.
   */
  grammarVocab(vocabSize: number = this.vocabSize): XGrammarVocab {
    const vocab = Object.fromEntries(this.tok.get_vocab(true));
    return buildXGrammarVocab({ ...this.grammarParts, model: { vocab } }, vocabSize, this.stopTokenIds);
  }

  /** The raw bytes a token stands for (a byte-level BPE piece may be part of a UTF-8 character). */
  tokenBytes(id: number): Uint8Array {
    return this.bytes(id);
  }

  /**
   * Render the chat template for `messages` into markup and user pieces (chat-encoding.ts): every
   * client string is shielded so that only markup can hold special tokens. Template errors (e.g.
   * `raise_exception('Conversation roles must alternate')`) become 400 naming `messages`.
   * `tools` (the request's function tools) is passed to the template when given, its strings
   * shielded like the messages'. `options` (template-kwargs.ts): `addGenerationPrompt` (default
   * true); `templateKwargs`, extra variables whose strings (object keys below the top level
   * included) are shielded too, and which cannot replace a variable the server sets (the
   * server's value would win anyway); `continueFinalMessage`, rendered without the generation
   * prompt and cut after the final message's text (`cutAfterFinalMessage`).
   * @throws InvalidRequestError (400) naming `messages` (no template, the template refused),
   *   `chat_template_kwargs[.<name>]`, `add_generation_prompt` or `continue_final_message`.
   */
  private renderPieces(messages: ChatMessage[], tools?: unknown[], options: ChatRenderOptions = {}): PromptPiece[] {
    if (!this.template) {
      throw new InvalidRequestError(
        'This model has no chat template (no chat_template.jinja, and tokenizer_config.json has no `chat_template`); use /v1/completions.',
        'messages',
      );
    }
    checkRenderOptions(messages, options);
    const kwargs = Object.entries(options.templateKwargs ?? {});
    const strings: string[] = [this.templateSource, ...Object.values(this.templateVars)];
    const collect = (s: string) => (strings.push(s), s);
    for (const m of messages) templateMessage(m, collect);
    if (tools) mapStrings(tools, collect);
    for (const [, v] of kwargs) mapStrings(v, collect);
    const ph = new Placeholders(strings);
    const shield = (s: string) => this.specials.shield(s, ph);
    // JSON structure (keys; tool definitions and call arguments) keeps the words templates look up
    // and compare: only special-token occurrences and edges are hidden there (shield's `inside`).
    const shieldJson = (s: string) => this.specials.shield(s, ph, false);
    const msgs = messages.map((m) => templateMessage(m, shield, shieldJson));
    // NOTE(why): top-level names are variable names, never rendered, so they stay as sent (a
    // shielded name would no longer be the variable the template reads); fromEntries makes an
    // own property even of "__proto__". The server's own variables come after and win.
    const vars: Record<string, unknown> = Object.fromEntries(kwargs.map(([k, v]) => [k, mapStrings(v, shield, shieldJson)]));
    Object.assign(vars, this.templateVars, { messages: msgs, add_generation_prompt: options.addGenerationPrompt ?? !options.continueFinalMessage });
    if (tools && tools.length > 0) vars.tools = mapStrings(tools, shieldJson);
    let rendered: string;
    try {
      rendered = this.template.render(vars);
    } catch (err) {
      throw new InvalidRequestError(`The chat template rejected the messages: ${(err as Error).message}`, 'messages');
    }
    const pieces = ph.restore(rendered);
    if (options.continueFinalMessage !== true) return pieces;
    return cutAfterFinalMessage(pieces, contentText(messages[messages.length - 1]?.content));
  }

  /**
   * The rendered chat prompt as text (see `renderPieces` for `tools`, `options` and the errors).
   */
  renderChat(messages: ChatMessage[], tools?: unknown[], options?: ChatRenderOptions): string {
    return this.renderPieces(messages, tools, options)
      .map((p) => p.text)
      .join('');
  }

  /**
   * Render and encode a chat prompt. Special tokens come only from the template's markup; every
   * client string is encoded as plain text (no special-token parsing, no BOS added: the template
   * wrote it). `maxTokens` as in `encode`, naming `messages`; `tools` and `options` (vLLM's
   * `add_generation_prompt`, `continue_final_message`, `chat_template_kwargs`) and the 400s as
   * in `renderPieces`.
   */
  encodeChat(messages: ChatMessage[], maxTokens?: number, tools?: unknown[], options?: ChatRenderOptions): number[] {
    const pieces = this.renderPieces(messages, tools, options);
    if (maxTokens !== undefined) {
      this.checkFits(
        pieces.reduce((n, p) => n + Buffer.byteLength(p.text), 0),
        { maxTokens, param: 'messages' },
      );
    }
    const ids: number[] = [];
    for (const span of splitSpecial(pieces, this.specials)) {
      if ('special' in span) ids.push(span.special.id);
      else for (const id of this.plain.encode(span.text, { add_special_tokens: false }).ids) ids.push(id);
    }
    return ids;
  }
}

/** A file's text; undefined when `optional` and it does not exist. */
async function readText(file: string, optional: boolean): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    const code = (err as NodeJS.ErrnoException).code;
    // The errno's code says it; its message would repeat the path.
    throw new Error(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file (a model folder needs tokenizer.json and tokenizer_config.json)' : (code ?? (err as Error).message)}`, { cause: err });
  }
}

async function readJson(file: string, optional: boolean): Promise<Record<string, unknown> | undefined> {
  const text = await readText(file, optional);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Load the tokenizer of a Hugging Face model folder: `tokenizer.json` (required),
 * `tokenizer_config.json`, `chat_template.jinja` (takes precedence over the config's
 * `chat_template`), `config.json` and `generation_config.json` (optional).
 * Rejects with a message naming the file at fault.
 */
export async function loadTokenizer(dir: string): Promise<ModelTokenizer> {
  const [tokenizer, tokenizerConfig, config, generationConfig, chatTemplate] = await Promise.all([
    readJson(path.join(dir, 'tokenizer.json'), false),
    readJson(path.join(dir, 'tokenizer_config.json'), true),
    readJson(path.join(dir, 'config.json'), true),
    readJson(path.join(dir, 'generation_config.json'), true),
    readText(path.join(dir, 'chat_template.jinja'), true),
  ]);
  return new ModelTokenizer({ tokenizer: tokenizer!, tokenizerConfig: tokenizerConfig ?? {}, config, generationConfig, chatTemplate });
}
