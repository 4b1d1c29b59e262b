/**
 * A reporter that ends the run with one plain line, `tests: N passed, N failed, N skipped`,
 * which CI systems that do not parse vitest's own summary can read. Failures outside any test (a
 * file that fails to load, a beforeAll/afterAll hook, an unhandled error) count as failed too, so
 * the line never says 0 failed for a run vitest failed.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class PlainSummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown> = []): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const outside: string[] = [];
    for (const mod of testModules) {
      let failedHere = 0;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failedHere++;
        else skipped++;
      }
      failed += failedHere;
      if (mod.state() === 'failed' && failedHere === 0) {
        failed++;
        outside.push(mod.moduleId);
      }
    }
    failed += unhandledErrors.length;
    for (const id of outside) process.stdout.write(`\nfailed outside any test (load error or hook): ${id}`);
    if (unhandledErrors.length > 0) process.stdout.write(`\nunhandled errors: ${unhandledErrors.length}`);
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
