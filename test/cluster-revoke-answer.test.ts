/**
 * The line `devices revoke` prints (src/cli/devices-actions.ts revokedLine): alone, exactly what
 * it always printed; with several instances (the answer carries sessionsOnOtherInstances), where
 * the sessions were closed and what the other instances close as they hear of it.
 */
import { describe, expect, it } from "vitest";
import { revokedLine, type RevokeAnswer } from "../src/cli/devices-actions.js";
import type { DeviceView } from "../src/protocol/messages.js";

const device = { deviceId: "kzuevw23bzbubtbxi27wliw3in", name: "trial-node" } as DeviceView;
const answer = (extra: Partial<RevokeAnswer>): RevokeAnswer => ({ device, sessionsClosed: 0, ...extra });

describe("the line devices revoke prints", () => {
  it("alone, is the line it always was", () => {
    expect(revokedLine(answer({ sessionsClosed: 1 }))).toBe(
      "✓ revoked kzuevw23bzbubtbxi27wliw3in (trial-node); closed 1 live session(s)\n",
    );
  });

  it("through an instance that does not hold the node, says the others close theirs", () => {
    expect(revokedLine(answer({ sessionsOnOtherInstances: 1 }))).toBe(
      "✓ revoked kzuevw23bzbubtbxi27wliw3in (trial-node); closed 0 live session(s) here; the other instances close their 1 as they hear of it (within about a second)\n",
    );
  });

  it("through the holder, says no other instance held one", () => {
    expect(revokedLine(answer({ sessionsClosed: 1, sessionsOnOtherInstances: 0 }))).toBe(
      "✓ revoked kzuevw23bzbubtbxi27wliw3in (trial-node); closed 1 live session(s) here; no other instance held one\n",
    );
  });

  it("when the others' sessions could not be read, still says they close theirs", () => {
    expect(revokedLine(answer({ sessionsOnOtherInstances: null }))).toBe(
      "✓ revoked kzuevw23bzbubtbxi27wliw3in (trial-node); closed 0 live session(s) here; the other instances close theirs as they hear of it (within about a second)\n",
    );
  });
});
