// How configuration problems read to a person: one line each, with line number, key path, the value
// found and what to do. Used by `outpost check-config` and by `outpost run` before it gives up.
import type { ConfigError, ConfigProblem } from '../errors.js';

export function formatConfigError(error: ConfigError): string {
  return [error.message, ...error.problems.map(formatProblem)].join('\n');
}

function formatProblem(problem: ConfigProblem): string {
  const where = problem.line === undefined ? '' : `line ${problem.line}: `;
  const key = problem.path === '' ? '' : `${problem.path}`;
  const value = problem.value === undefined ? '' : ` = ${preview(problem.value)}`;
  const subject = key || value ? `${key}${value}: ` : '';
  return `  ${where}${subject}${problem.message}`;
}

function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
