// The OutpostError a promise fails with (its code and hint are what a user reads); any other outcome
// fails the test.
import { OutpostError } from '../../daemon/src/errors.js';

export async function outpostFailure(promise: Promise<unknown>): Promise<OutpostError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof OutpostError) return error;
    throw error;
  }
  throw new Error('expected an OutpostError, and it succeeded');
}
