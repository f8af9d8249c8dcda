import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 as Ajv } from 'ajv/dist/2020.js';
import { InvalidRequestError } from '../../plugin/errors.ts';
import { GrammarService } from '../../plugin/structured/service.ts';
import type { GrammarSpec } from '../../plugin/structured/spec.ts';
import type { ModelTokenizer } from '../../plugin/tokenizer.ts';
import { loadTestTokenizer, randomWalk } from './helpers.ts';
import { SCHEMAS } from './schemas.ts';

for (const name of ['demo', 'llama3', 'qwen3'] as const) {
  describe(`grammar service with the ${name} tokenizer`, () => {
    let tok: ModelTokenizer;
    let svc: GrammarService;
    before(async () => {
      tok = loadTestTokenizer(name);
      svc = new GrammarService(tok.grammarVocab(), { compileTimeoutMs: 60_000 });
      await svc.ready;
    });
    after(() => svc.dispose());

    const seeds = name === 'demo' ? 12 : 4;
    for (const [schemaName, schema] of Object.entries(SCHEMAS)) {
      test(`json_schema ${schemaName}: ${seeds} random walks parse and validate`, async () => {
        const validate = new Ajv().compile(schema);
        for (let seed = 1; seed <= seeds; seed++) {
          const sg = await svc.open({ kind: 'json_schema', schema, param: 'response_format.json_schema.schema' });
          const { ids, finished } = await randomWalk(sg, tok.grammarVocab().vocabSize, tok.stopTokenIds, seed * 7 + schemaName.length, 300);
          sg.close();
          assert.ok(finished, `seed ${seed}: no stop token within 300 tokens: ${JSON.stringify(tok.decode(ids, false))}`);
          const text = tok.decode(ids);
          const value = JSON.parse(text);
          assert.ok(validate(value), `seed ${seed}: ${text} ${JSON.stringify(validate.errors)}`);
        }
      });
    }

    test('json_object gives a JSON object; choice gives one of the choices; regex matches', async () => {
      const vs = tok.grammarVocab().vocabSize;
      const specs: Array<[GrammarSpec, (t: string) => void]> = [
        [{ kind: 'json_object', param: 'response_format' }, (t) => assert.equal(typeof JSON.parse(t), 'object')],
        [{ kind: 'choice', choices: ['positive', 'negative', 'a "quoted"\nline'], param: 'guided_choice' }, (t) => assert.ok(['positive', 'negative', 'a "quoted"\nline'].includes(t), t)],
        [{ kind: 'regex', pattern: '[0-9]{3}-[a-c]{2,4}', param: 'guided_regex' }, (t) => assert.match(t, /^[0-9]{3}-[a-c]{2,4}$/)],
        [{ kind: 'ebnf', grammar: 'root ::= "yes" | "no" | ("maybe " [0-9])', param: 'guided_grammar' }, (t) => assert.match(t, /^(yes|no|maybe [0-9])$/)],
      ];
      for (const [spec, check] of specs) {
        for (let seed = 1; seed <= 4; seed++) {
          const sg = await svc.open(spec);
          const { ids, finished } = await randomWalk(sg, vs, tok.stopTokenIds, seed, spec.kind === 'json_object' ? 40 : 300);
          sg.close();
          if (spec.kind === 'json_object' && !finished) continue; // an unbounded object may not end in 40 tokens
          assert.ok(finished, `${spec.kind} seed ${seed}`);
          check(tok.decode(ids));
        }
      }
    });

    test('bad specs are 400s naming the field, and the service keeps working', async () => {
      const bad: GrammarSpec[] = [
        { kind: 'json_schema', schema: { type: 'strin' }, param: 'response_format.json_schema.schema' },
        { kind: 'ebnf', grammar: 'root ::= "a" | b', param: 'guided_grammar' },
        { kind: 'regex', pattern: '([a-z', param: 'guided_regex' },
      ];
      for (const spec of bad) {
        await assert.rejects(svc.open(spec), (e: unknown) => {
          assert.ok(e instanceof InvalidRequestError, String(e));
          assert.equal(e.param, spec.param);
          return true;
        });
      }
      const sg = await svc.open({ kind: 'choice', choices: ['ok'], param: 'guided_choice' });
      assert.equal(svc.liveMatchers, 1);
      sg.close();
      assert.equal(svc.liveMatchers, 0);
    });
  });
}

test('an over-long spec is refused before compiling', async () => {
  const tok = loadTestTokenizer('demo');
  const svc = new GrammarService(tok.grammarVocab(), { maxSpecBytes: 100 });
  try {
    const schema = { type: 'object', properties: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`p${i}`, { type: 'string' }])) };
    await assert.rejects(svc.open({ kind: 'json_schema', schema, param: 'guided_json' }), (e: unknown) => e instanceof InvalidRequestError && e.param === 'guided_json' && /at most 100/.test(e.message));
  } finally {
    await svc.dispose();
  }
});

test('a trap inside xgrammar (its WASM stack overflowing) is a 400 and the worker is replaced: later grammars still compile', async () => {
  const tok = loadTestTokenizer('demo');
  const svc = new GrammarService(tok.grammarVocab(), { maxSpecBytes: 100_000 });
  try {
    const deep = 'root ::= ' + '('.repeat(5000) + '"a"' + ')'.repeat(5000);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(svc.open({ kind: 'ebnf', grammar: deep, param: 'guided_grammar' }), (e: unknown) => e instanceof InvalidRequestError && e.param === 'guided_grammar');
    }
    for (const spec of [{ kind: 'choice' as const, choices: ['yes', 'no'], param: 'guided_choice' }, { kind: 'json_object' as const, param: 'response_format' }]) {
      const g = await svc.open(spec);
      g.close();
    }
    // Nested past the schema check's limit: refused before xgrammar sees it.
    let schema: Record<string, unknown> = { type: 'integer' };
    for (let d = 0; d < 40; d++) schema = { type: 'array', items: schema };
    await assert.rejects(svc.open({ kind: 'json_schema', schema, param: 'guided_json' }), (e: unknown) => e instanceof InvalidRequestError && /a sub-schema 33 levels deep/.test(e.message));
  } finally {
    await svc.dispose();
  }
});

/** Each schema, opened as `param`, is a 400 (InvalidRequestError) naming `param` whose message matches its pattern. */
async function expectRefused(svc: GrammarService, cases: Array<[Record<string, unknown>, RegExp]>, param: string): Promise<void> {
  for (const [schema, re] of cases) {
    await assert.rejects(svc.open({ kind: 'json_schema', schema, param }), (e: unknown) => {
      assert.ok(e instanceof InvalidRequestError);
      assert.equal(e.param, param);
      assert.match(e.message, re);
      return true;
    });
  }
}

test('a $ref that points to nothing or outside the schema is a 400 naming it; local refs compile, and the service keeps working', async () => {
  const tok = loadTestTokenizer('demo');
  const svc = new GrammarService(tok.grammarVocab());
  try {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      // xgrammar 0.1.27 aborts its WASM instance on this one (a FATAL check): never sent to it.
      [{ type: 'object', properties: { a: { $ref: '#/$defs/missing' } }, $defs: { x: { type: 'string' } } }, /\$ref "#\/\$defs\/missing"` at \/properties\/a, which points to nothing/],
      [{ type: 'object', properties: { a: { $ref: 'http://example.com/s.json' } } }, /not a local reference/],
      [{ type: 'object', properties: { a: { $ref: 7 } } }, /\$ref 7/],
      [{ $defs: { x: { type: 'array', items: { $ref: '#/$defs/y' } } }, $ref: '#/$defs/x' }, /\/\$defs\/x\/items/],
      // RFC 6901 escapes: xgrammar looks segments up as written, so this one would not resolve there.
      [{ type: 'object', properties: { 'a/b': { type: 'integer' }, c: { $ref: '#/properties/a~1b' } } }, /points to nothing/],
    ];
    await expectRefused(svc, bad, 'response_format');
    for (const schema of [
      { type: 'object', properties: { a: { $ref: '#/definitions/x' } }, definitions: { x: { type: 'string' } } },
      { type: 'object', properties: { next: { anyOf: [{ type: 'null' }, { $ref: '#' }] } } },
    ]) {
      const g = await svc.open({ kind: 'json_schema', schema, param: 'response_format' });
      g.close();
    }
  } finally {
    await svc.dispose();
  }
});

test('schema keywords xgrammar does not enforce are 400s naming the keyword and where it is', async () => {
  const tok = loadTestTokenizer('demo');
  const svc = new GrammarService(tok.grammarVocab());
  try {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ type: 'object', properties: { x: { type: 'integer', multipleOf: 7 } } }, /multipleOf.*\/properties\/x/],
      [{ type: 'object', properties: { x: { type: 'number', maximum: 1 } } }, /maximum \(on a "number"/],
      [{ type: 'array', items: { type: 'integer' }, uniqueItems: true }, /uniqueItems/],
      [{ type: 'object', properties: { a: { allOf: [{ type: 'integer' }, { minimum: 1 }] } } }, /allOf/],
      [{ type: 'string', format: 'email', maxLength: 20 }, /format together/],
      [{ type: 'object', properties: { c: { enum: [] } } }, /enum: \[\]` at \/properties\/c, which no value satisfies/],
      [{ type: 'string', minLength: 5, maxLength: 2 }, /minLength 5 > maxLength 2/],
      [{ type: 'object', properties: {}, required: ['z'], additionalProperties: false }, /required "z" \(not in properties/],
    ];
    await expectRefused(svc, cases, 'tools[0].function.parameters');
  } finally {
    await svc.dispose();
  }
});
