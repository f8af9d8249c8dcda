/**
 * Model families against the independent float32 PyTorch reference (test/reference/model.py,
 * fixtures in test/fixtures/families/): the checks of family-checks.ts for every fixture below.
 * Sliding-window fixtures have prompts several windows long.
 */
import { describeFamilyChecks } from './family-checks.ts';
import { materializeFixture } from './family-fixtures.ts';

/** Fixtures checked here (test/fixtures/families/<name>). */
export const FAMILY_FIXTURES = ['qwen3', 'gemma2', 'gemma3', 'phi3', 'phi4-partial', 'mistral-sw', 'qwen2-sw', 'llama-yarn'];

for (const name of FAMILY_FIXTURES) describeFamilyChecks(`family ${name} vs the PyTorch reference`, () => materializeFixture(name));
