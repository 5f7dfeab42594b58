// Awaits a condition instead of sleeping: polls `check` until it returns a
// truthy value or the deadline passes.
export async function waitFor(check, { timeoutMs = 10_000, everyMs = 20, what = 'condition' } = {}) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
