import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import {
  cleanupAll,
  listDevices,
  runCli,
  startRegistration,
  startTestGateway,
  type TestGateway,
} from "./harness.js";
import { shortLifetimes } from "./short-lifetimes.js";

// A registration waits `enroll.pendingTtl` for an admin (15 min by default; 3 s here). After that
// no approval goes through, whether or not the node is still polling.

const PENDING_SECONDS = 3;
let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway({ configure: shortLifetimes({ pendingRegistration: PENDING_SECONDS }) });
});
afterAll(async () => {
  await gateway.stop();
  cleanupAll();
});

describe("an expired registration", () => {
  it("is refused by devices approve with registration_expired, and the device stays unapproved", async () => {
    const { register, device } = await startRegistration(gateway, "too-late");
    // The node gives up waiting; nobody polls the request any more.
    register.child.kill("SIGTERM");
    await register.exited;
    // A generous margin past the expiry: the refusal does not depend on how loaded the machine is.
    await sleep((PENDING_SECONDS + 2) * 1000);
    for (const id of [device.userCode!, device.deviceId]) {
      const approve = await runCli(["devices", "approve", id, "--home", gateway.home, "--json"]);
      expect(approve.code, approve.stdout).toBe(1);
      expect(JSON.parse(approve.stdout)).toMatchObject({ error: "registration_expired" });
    }
    const after = (await listDevices(gateway)).find((d) => d.deviceId === device.deviceId);
    expect(after?.status).not.toBe("approved");
  });
});
