/**
 * Project Wycheproof's JWS vectors against the signature layer (`verifyJwsSignature`).
 *
 * Each group's key is trusted (if it is a key we would ever trust at all); then every `invalid`
 * case must be refused, every `valid` case of an allow-listed algorithm accepted, and every `valid`
 * case of another algorithm (HS256, RS256, PS384, ES512...) refused, because it is not on our
 * allow-list. The vectors live beside the project (../shared/testdata/wycheproof, see its README),
 * not in it: where they are absent this suite says so and skips.
 */
import { describe, it, expect } from "vitest";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type * as jose from "jose";
import { ALLOWED_ALGORITHMS, KeyRing, verificationKeyFromJwk, verifyJwsSignature } from "../src/auth/jwt.js";
import { GatehouseError } from "../src/protocol/errors.js";

const VECTORS = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../shared/testdata/wycheproof/json_web_signature_test.json",
);
const EXPECTED_TOTAL = 401;
const EXPECTED_INVALID = 355;

interface WycheproofTest {
  tcId: number;
  comment: string;
  jws: string;
  result: "valid" | "invalid" | "acceptable";
  flags: string[];
}

interface WycheproofGroup {
  comment: string;
  public?: jose.JWK;
  private?: jose.JWK;
  tests: WycheproofTest[];
}

interface WycheproofFile {
  numberOfTests: number;
  testGroups: WycheproofGroup[];
}

type Outcome =
  | { kind: "accepted"; payload: Uint8Array }
  | { kind: "refused"; code: string }
  // Anything but a GatehouseError escaping the verifier is a bug in itself.
  | { kind: "crashed"; error: string };

interface CaseResult {
  test: WycheproofTest;
  /** The `alg` of the JWS's protected header, if it decodes at all. */
  alg: string | undefined;
  outcome: Outcome;
}

interface GroupResult {
  /** Whether the group's key made it into the ring. */
  trusted: boolean;
  cases: CaseResult[];
}

const exists = fs.existsSync(VECTORS);
if (!exists) {
  console.warn(`wycheproof: ${VECTORS} is absent (a clone on its own?), skipping the JWS vectors`);
}
const vectors: WycheproofFile | undefined = exists
  ? (JSON.parse(fs.readFileSync(VECTORS, "utf8")) as WycheproofFile)
  : undefined;
const groups = vectors?.testGroups ?? [];

const allowed = (alg: string | undefined): boolean =>
  alg !== undefined && (ALLOWED_ALGORITHMS as readonly string[]).includes(alg);

/** The header's `alg`, read leniently: only used to sort `valid` cases into allowed or not. */
function headerAlg(jws: string): string | undefined {
  try {
    const header: unknown = JSON.parse(Buffer.from(jws.split(".")[0] ?? "", "base64url").toString("utf8"));
    const alg = (header as { alg?: unknown } | null)?.alg;
    return typeof alg === "string" ? alg : undefined;
  } catch {
    return undefined;
  }
}

async function outcomeOf(jws: string, ring: KeyRing): Promise<Outcome> {
  try {
    const { payload } = await verifyJwsSignature(jws, ring);
    return { kind: "accepted", payload };
  } catch (error) {
    if (error instanceof GatehouseError) return { kind: "refused", code: error.code };
    return { kind: "crashed", error: String(error) };
  }
}

async function runGroup(group: WycheproofGroup): Promise<GroupResult> {
  const ring = new KeyRing();
  let trusted = false;
  const jwk = group.public ?? group.private;
  try {
    if (jwk) {
      ring.set([await verificationKeyFromJwk(jwk)]);
      trusted = true;
    }
  } catch {
    // Not a key we would trust (HS256 secret, RSA, P-521, an encryption key): the ring stays empty.
  }
  const cases: CaseResult[] = [];
  for (const test of group.tests) {
    cases.push({ test, alg: headerAlg(test.jws), outcome: await outcomeOf(test.jws, ring) });
  }
  return { trusted, cases };
}

// Each group is run once, whichever test asks first: the summary must not depend on the order or
// on which group tests a filter (-t) selected.
const runs = new Map<WycheproofGroup, Promise<GroupResult>>();
const resultOf = (group: WycheproofGroup): Promise<GroupResult> => {
  let run = runs.get(group);
  if (!run) {
    run = runGroup(group);
    runs.set(group, run);
  }
  return run;
};

const describeCase = ({ test, alg, outcome }: CaseResult): string =>
  `tcId ${test.tcId} (${test.comment}, alg ${alg ?? "?"}): ${outcome.kind}` +
  (outcome.kind === "refused" ? ` ${outcome.code}` : outcome.kind === "crashed" ? ` ${outcome.error}` : "");

describe.skipIf(!exists)("Wycheproof JWS vectors against verifyJwsSignature", () => {
  groups.forEach((group, index) => {
    const ids = group.tests.map((t) => t.tcId);
    const name = `group ${index} "${group.comment}" (${ids.length} tcIds, ${Math.min(...ids)}-${Math.max(...ids)})`;

    it(name, async () => {
      const { trusted, cases } = await resultOf(group);
      const wrong: string[] = [];
      for (const result of cases) {
        const { test, alg, outcome } = result;
        const mustAccept = test.result === "valid" && trusted && allowed(alg);
        const ok = mustAccept ? outcome.kind === "accepted" : outcome.kind === "refused";
        if (!ok) wrong.push(`${describeCase(result)}, expected ${mustAccept ? "accepted" : "refused"}`);
        if (mustAccept && outcome.kind === "accepted") {
          // The payload returned is the one that was signed.
          const signedPayload = Buffer.from(test.jws.split(".")[1] ?? "", "base64url");
          expect(Buffer.from(outcome.payload).equals(signedPayload), `tcId ${test.tcId} payload`).toBe(true);
        }
      }
      // Listing every mismatch names the tcIds at once, rather than stopping at the first.
      expect(wrong).toEqual([]);
    });
  });

  it(`summary: ${EXPECTED_INVALID} invalid refused, ${EXPECTED_TOTAL} cases in all`, async () => {
    const all = (await Promise.all(groups.map(resultOf))).flatMap((g) => g.cases);
    const invalid = all.filter((c) => c.test.result === "invalid");
    const valid = all.filter((c) => c.test.result === "valid");
    const invalidRefused = invalid.filter((c) => c.outcome.kind === "refused").length;
    const validAccepted = valid.filter((c) => allowed(c.alg) && c.outcome.kind === "accepted").length;
    const validAllowListed = valid.filter((c) => allowed(c.alg)).length;
    const validOtherRefused = valid.filter((c) => !allowed(c.alg) && c.outcome.kind === "refused").length;

    console.log(
      `wycheproof: ${all.length} cases; invalid refused ${invalidRefused}/${invalid.length}; ` +
        `valid accepted (${ALLOWED_ALGORITHMS.join("/")}) ${validAccepted}/${validAllowListed}; ` +
        `valid of other algorithms refused (not allow-listed) ${validOtherRefused}/${valid.length - validAllowListed}`,
    );

    expect(vectors?.numberOfTests).toBe(EXPECTED_TOTAL);
    expect(all).toHaveLength(EXPECTED_TOTAL);
    expect(invalid).toHaveLength(EXPECTED_INVALID);
    expect(invalidRefused).toBe(EXPECTED_INVALID);
    expect(validAccepted).toBeGreaterThan(0);
    expect(validAccepted).toBe(validAllowListed);
    expect(validOtherRefused).toBe(valid.length - validAllowListed);
    // No other results (e.g. "acceptable") are expected in this file.
    expect(invalid.length + valid.length).toBe(EXPECTED_TOTAL);
  });
});
