/**
 * Writes that a request or a closing session starts but does not wait for (audit entries of
 * refusals, session ends). Shutdown drains them before the store closes, so a clean stop loses
 * nothing that was started.
 */
export class BackgroundWrites {
  private readonly pending = new Set<Promise<unknown>>();

  track(work: Promise<unknown>): void {
    const settled = work.catch(() => undefined).finally(() => this.pending.delete(settled));
    this.pending.add(settled);
  }

  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
