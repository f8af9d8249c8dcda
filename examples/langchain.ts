/**
 * Use openlora from LangChain's `ChatOpenAI`: `invoke` and `stream`, no extra fields needed.
 * Run: `node --import tsx examples/langchain.ts [BASE_URL]` while `npm start` is serving.
 */
import { ChatOpenAI } from '@langchain/openai';

/** Invoke once and stream once; returns both texts. */
export async function runLangChain(baseURL: string, model = 'tiny-shakespeare:shout'): Promise<{ invoked: string; streamed: string }> {
  const llm = new ChatOpenAI({
    model,
    apiKey: process.env.OPENAI_API_KEY ?? 'not-needed',
    configuration: { baseURL },
    temperature: 0,
    maxTokens: 40,
  });
  const msg = await llm.invoke([
    ['system', 'You are a player in a Shakespeare play.'],
    ['human', 'KING RICHARD II:\nWhat news from the north?'],
  ]);
  const invoked = typeof msg.content === 'string' ? msg.content : JSON.stringify(msg.content);
  let streamed = '';
  for await (const chunk of await llm.stream('HAMLET:\nTo be, or not to be')) {
    streamed += typeof chunk.content === 'string' ? chunk.content : '';
  }
  return { invoked, streamed };
}

if (process.argv[1]?.endsWith('langchain.ts')) {
  const baseURL = process.argv[2] ?? process.env.OPENLORA_BASE_URL ?? 'http://127.0.0.1:8000/v1';
  const { invoked, streamed } = await runLangChain(baseURL);
  console.log('invoke:', invoked);
  console.log('stream:', streamed);
}
