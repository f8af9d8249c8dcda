/** JSON schemas for the structured-output tests: nested objects, arrays, enums, required fields, integer ranges, patterns. */

/** Bounded schemas (random weights never close an unbounded string). */
export const SCHEMAS: Record<string, Record<string, unknown>> = {
  person: {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 8 }, age: { type: 'integer', minimum: 0, maximum: 150 } },
    required: ['name', 'age'],
    additionalProperties: false,
  },
  nested: {
    type: 'object',
    properties: {
      user: {
        type: 'object',
        properties: { id: { type: 'integer', minimum: 1, maximum: 99999 }, role: { enum: ['admin', 'editor', 'viewer'] } },
        required: ['id', 'role'],
        additionalProperties: false,
      },
      tags: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 3 },
      active: { type: 'boolean' },
    },
    required: ['user', 'tags', 'active'],
    additionalProperties: false,
  },
  pattern: {
    type: 'object',
    properties: { code: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{2}$' }, grade: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 6 } },
    required: ['code'],
    additionalProperties: false,
  },
};

