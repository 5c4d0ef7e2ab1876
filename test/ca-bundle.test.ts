import { describe, expect, it } from "vitest";
import {
  checkCaBundle,
  createCertificateAuthority,
  signCaRotation,
  sha256Fingerprint,
  signCaSuccession,
  type CertificateAuthority,
} from "../src/pki/index.js";

const NOW = new Date("2026-02-01T00:00:00Z");

function ca(commonName: string): Promise<CertificateAuthority> {
  return createCertificateAuthority({ commonName, now: NOW, validityDays: 10 });
}

/** The bundle and rotation as GET /api/v1/ca publishes them during an overlap. */
async function overlap() {
  const previous = await ca("old");
  const next = await ca("new");
  const { statement, signature } = await signCaRotation(previous, next, NOW);
  const nextSignature = await signCaSuccession(next, statement);
  return {
    previous,
    next,
    bundle: next.certPem + previous.certPem,
    rotation: { statement, signature, nextSignature },
  };
}

const fingerprints = (cas: { raw: Buffer }[]) => cas.map((c) => sha256Fingerprint(c.raw));

describe("checkCaBundle", () => {
  it("trusts both CAs of a rotation whichever one is pinned, the pinned one first", async () => {
    const { previous, next, bundle, rotation } = await overlap();
    expect(fingerprints(checkCaBundle(bundle, previous.fingerprint, rotation))).toEqual([
      previous.fingerprint,
      next.fingerprint,
    ]);
    expect(fingerprints(checkCaBundle(bundle, next.fingerprint, rotation))).toEqual([
      next.fingerprint,
      previous.fingerprint,
    ]);
  });

  it("trusts a lone CA without any rotation", async () => {
    const only = await ca("only");
    expect(checkCaBundle(only.certPem, only.fingerprint)).toHaveLength(1);
  });

  it("refuses a bundle without the pinned CA", async () => {
    const { bundle, rotation } = await overlap();
    const other = await ca("other");
    expect(() => checkCaBundle(bundle, other.fingerprint, rotation)).toThrow(/does not hold the pinned CA/);
  });

  it("refuses a CA the pinned one does not vouch for", async () => {
    const { previous, next, rotation } = await overlap();
    const intruder = await ca("intruder");
    expect(() =>
      checkCaBundle(previous.certPem + next.certPem + intruder.certPem, previous.fingerprint, rotation),
    ).toThrow(/does not vouch for it/);
    expect(() => checkCaBundle(next.certPem + previous.certPem, next.fingerprint)).toThrow(
      /does not vouch for it/,
    );
  });

  it("pinning the new CA, trusts the previous one only on the new CA's own signature", async () => {
    const { next, bundle, rotation } = await overlap();
    expect(() =>
      checkCaBundle(bundle, next.fingerprint, {
        statement: rotation.statement,
        signature: rotation.signature,
      }),
    ).toThrow(/succession signature/);
    // An impostor CA that hands over to the real new CA with its own key is not the new CA's predecessor.
    const impostor = await ca("impostor");
    const forged = await signCaRotation(impostor, next, NOW);
    const forgedSuccession = await signCaSuccession(impostor, forged.statement);
    expect(() =>
      checkCaBundle(next.certPem + impostor.certPem, next.fingerprint, {
        ...forged,
        nextSignature: forgedSuccession,
      }),
    ).toThrow(/succession signature does not verify/);
    // The previous CA's signature cannot stand in for the new CA's.
    expect(() =>
      checkCaBundle(bundle, next.fingerprint, { ...rotation, nextSignature: rotation.signature }),
    ).toThrow(/succession signature does not verify/);
  });

  it("pinning the previous CA, refuses a hand-over it did not sign", async () => {
    const { previous, next, bundle } = await overlap();
    const other = await ca("other");
    const forged = await signCaRotation(other, next, NOW);
    expect(() =>
      checkCaBundle(bundle, previous.fingerprint, {
        statement: { ...forged.statement, previousFingerprint: previous.fingerprint },
        signature: forged.signature,
      }),
    ).toThrow(/signature does not verify/);
  });
});
