/**
 * native/errors.ts speaks the addon's error contract: its code list is the addon's, and errors
 * thrown through `Engine` arrive as NativeError with the addon's code and field.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { engineDefaults } from '../../native/engine.ts';
import { NATIVE_ERROR_CODES } from '../../native/errors.ts';

test('NATIVE_ERROR_CODES is exactly the list the addon exports (errors.h)', () => {
  assert.deepEqual([...NATIVE_ERROR_CODES], engineDefaults().errorCodes);
});
