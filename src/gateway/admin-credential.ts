import { readFileSync } from "node:fs";
import path from "node:path";
import { GATEWAY_FILES, writeFileAtomic, writeJsonAtomic } from "../config/index.js";
import { importKeyPairPem, issueClientCertificate, identityOfSpki, spkiOf } from "../pki/index.js";
import type { GatewayContext } from "./context.js";

/**
 * After a CA rotation the gateway's own admin credential is re-issued by the new CA for the same
 * key, and admin/ca.pem becomes the bundle, so the admin keeps working after the old CA retires.
 */
export async function reissueLocalAdmin(ctx: GatewayContext): Promise<void> {
  const home = ctx.home;
  const keys = await importKeyPairPem(readFileSync(path.join(home, GATEWAY_FILES.adminKey), "utf8"));
  const { deviceId } = identityOfSpki(await spkiOf(keys.publicKey));
  const now = ctx.now();
  const issued = await issueClientCertificate(ctx.tls.ca, {
    publicKey: keys.publicKey,
    deviceId,
    now,
    ttlMs: ctx.config.certificates.adminTtl,
  });
  await ctx.store.insertCertificate({
    serial: issued.serial,
    deviceId,
    fingerprint: issued.fingerprint,
    notBefore: issued.notBefore.toISOString(),
    notAfter: issued.notAfter.toISOString(),
    issuedAt: now.toISOString(),
    pem: issued.pem,
  });
  await ctx.devices.update(deviceId, {
    certFingerprint: issued.fingerprint,
    certExpiresAt: issued.notAfter.toISOString(),
  });
  writeFileAtomic(path.join(home, GATEWAY_FILES.adminCert), issued.pem, 0o600);
  writeFileAtomic(path.join(home, GATEWAY_FILES.adminCa), ctx.tls.caBundle(), 0o644);
  const meta = JSON.parse(readFileSync(path.join(home, GATEWAY_FILES.adminGateway), "utf8")) as Record<
    string,
    unknown
  >;
  writeJsonAtomic(path.join(home, GATEWAY_FILES.adminGateway), {
    ...meta,
    caFingerprint: ctx.tls.ca.fingerprint,
  });
}
