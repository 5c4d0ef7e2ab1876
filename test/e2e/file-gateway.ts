import { afterAll, beforeAll } from "vitest";
import { cleanupAll, startTestGateway, type Running, type TestGateway } from "./harness.js";

/**
 * One gateway for every test of a file: registers a `beforeAll` that starts it
 * (`startTestGateway(options)`) and an `afterAll` that stops it and removes every temporary home
 * (`cleanupAll`). Call it once at the top level of a test file.
 *
 * Returns a stand-in that reads through to the started gateway, so the file's tests and helpers use
 * it as the gateway itself (`gateway.home`, `gateway.stop()`, `gateway.restart()` and so on).
 * Reading it before the `beforeAll` has run (at the top level of the file, say) throws.
 */
export function gatewayForFile(options?: Parameters<typeof startTestGateway>[0]): TestGateway {
  let started: TestGateway | undefined;
  beforeAll(async () => {
    started = await startTestGateway(options);
  });
  afterAll(async () => {
    await started?.stop();
    cleanupAll();
  });
  const current = (): TestGateway => {
    if (!started) throw new Error("the file's gateway is read before its beforeAll has started it");
    return started;
  };
  return {
    get home(): string {
      return current().home;
    },
    get url(): string {
      return current().url;
    },
    get port(): number {
      return current().port;
    },
    get caFingerprint(): string {
      return current().caFingerprint;
    },
    get process(): Running {
      return current().process;
    },
    stop: (hard?: boolean) => current().stop(hard),
    restart: () => current().restart(),
  };
}
