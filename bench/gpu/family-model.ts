/**
 * Prints the folder of a materialised model-family fixture (test/native/family-fixtures.ts:
 * config.json, model.safetensors generated from weights.json, tokenizer files) in a temporary
 * directory, for `openlora-cli crosscheck --model DIR` in bench/gpu/run.sh. The folder is left in
 * place for the CLI; it lives under the OS temp folder.
 *
 *   node --import tsx bench/gpu/family-model.ts gemma2
 *
 * Exit code 2 with a usage line when no fixture name is given; throws for an unknown one.
 */
import { materializeFixture } from '../../test/native/family-fixtures.ts';

const name = process.argv[2];
if (!name) {
  process.stderr.write('usage: node --import tsx bench/gpu/family-model.ts <fixture name under test/fixtures/families>\n');
  process.exit(2);
}
process.stdout.write(`${materializeFixture(name).modelDir}\n`);
