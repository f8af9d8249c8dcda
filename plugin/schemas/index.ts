/**
 * Request schemas of the OpenAI endpoints and the one function that validates a body.
 */
export { ChatCompletionRequestSchema, MessageSchema, type ChatCompletionRequest } from './chat.ts';
export { CompletionRequestSchema, PromptSchema, type CompletionRequest } from './completions.ts';
export { StopSchema, AdapterSetSchema, MAX_STOP, promptLogprobsOf, stopList } from './common.ts';
export { parseRequest, issueToError, formatParam } from './issues.ts';
