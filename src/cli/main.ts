#!/usr/bin/env node
/** Entry point of the `nitride` binary. */
import { runCli } from './program.js';

process.exitCode = await runCli(process.argv);
