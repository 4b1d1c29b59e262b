/** Runs async jobs one at a time, in call order; a job's failure goes to its caller and does not stop the next. */
export class SerialQueue {
  /** Settles after the last queued job; never rejects. */
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(() => job());
    this.tail = result.catch(() => {});
    return result;
  }

  /** Resolves once every job queued so far has finished. */
  idle(): Promise<void> {
    return this.tail.then(() => {});
  }
}
