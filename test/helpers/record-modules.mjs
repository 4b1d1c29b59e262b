/**
 * `node --import <this file>`: appends every module the process loads to $NITRIDE_MODULE_LOG,
 * one per line: ES modules by URL (a loader hook), CommonJS requires and native addons by the
 * name they were required with.
 */
import { appendFileSync } from 'node:fs';
import Module, { register } from 'node:module';

const log = process.env.NITRIDE_MODULE_LOG;
if (!log) throw new Error('NITRIDE_MODULE_LOG is not set');

const hook = `
import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(${JSON.stringify(log)}, url + '\\n');
  return next(url, context);
}`;
register('data:text/javascript,' + encodeURIComponent(hook));

const load = Module._load;
Module._load = function (request, ...rest) {
  appendFileSync(log, `require:${request}\n`);
  return load.call(this, request, ...rest);
};
