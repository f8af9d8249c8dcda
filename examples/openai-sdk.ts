/**
 * Stream a chat completion from openlora with the official `openai` SDK.
 * Run: `node --import tsx examples/openai-sdk.ts [BASE_URL]` while `npm start` is serving.
 */
import OpenAI from 'openai';

/** Stream one chat completion and return the text (also written to stdout as it arrives). */
export async function streamChat(baseURL: string, model = 'tiny-shakespeare:whisper'): Promise<string> {
  const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? 'not-needed' });
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?' }],
    max_tokens: 48,
    temperature: 0.7,
    seed: 1,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta?.content ?? '';
    text += delta;
    if (process.argv[1]?.endsWith('openai-sdk.ts')) process.stdout.write(delta);
  }
  return text;
}

if (process.argv[1]?.endsWith('openai-sdk.ts')) {
  const baseURL = process.argv[2] ?? process.env.OPENLORA_BASE_URL ?? 'http://127.0.0.1:8000/v1';
  await streamChat(baseURL);
  process.stdout.write('\n');
}
