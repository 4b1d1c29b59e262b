/** The error `promise` rejects with; throws if it resolves (`expected` says what was wanted). */
export async function rejection(promise: Promise<unknown>, expected = 'a rejection'): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error(`expected ${expected}, but it resolved`);
}
