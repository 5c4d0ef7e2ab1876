import { afterAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { X509Certificate, createPrivateKey, sign } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { renewalTime } from "../../src/node/credential-keeper.js";
import { reissueProof } from "../../src/gateway/certificates.js";
import { createCsr, importKeyPairPem } from "../../src/pki/index.js";
import {
  cleanupAll,
  registeredNode,
  runCli,
  runJson,
  spawnCli,
  startTestGateway,
  type Running,
} from "./harness.js";
import {
  backdateDeviceCertificate,
  deviceCertificate,
  deviceShow,
  fingerprintOf,
  httpsRequest,
  issuedBy,
  keyMatchesCertificate,
  nodeTls,
  nodesList,
  openDirectSession,
  pemBundle,
  presentedServerCertificate,
  renewalOnTheWire,
  testConnection,
  waitConnected,
  waitForMsg,
  withMsg,
  statesSinceConnected,
} from "./lifecycle-fixtures.js";
import { CLIENT_CERT_SECONDS, SERVER_CERT_SECONDS, renewalAfter, shortLifetimes } from "./short-lifetimes.js";

afterAll(cleanupAll);

/** A wait for `seconds` of product time, plus room for a loaded machine: milliseconds. */
const patiently = (seconds: number) => (seconds + 20) * 1000;
/** Tests that wait out several renewals: their own limit, beyond vitest's default minute. */
const LONG_TEST_MS = 180_000;

// Each test has its own gateway and mostly waits for lifetimes to pass: they wait side by side.
describe.concurrent("the certificate lifecycle, with real processes and real TLS", () => {
  it("keeps a node connected across three automatic renewals", { timeout: LONG_TEST_MS }, async () => {
    const gateway = await startTestGateway({
      configure: shortLifetimes({ clientCert: CLIENT_CERT_SECONDS }),
    });
    const { home } = await registeredNode(gateway, "renewer");
    const first = deviceCertificate(home);
    const node = spawnCli(["node", "start", "--home", home]);
    await waitConnected(node);
    const [before] = await nodesList(gateway);
    expect(before?.online).toBe(true);

    await waitForMsg(node, "certificate renewed", 3, patiently(3 * renewalAfter(CLIENT_CERT_SECONDS)));
    expect(statesSinceConnected(node), node.stdout).toEqual(["connected"]);
    const after = await nodesList(gateway);
    expect(after).toHaveLength(1);
    expect(after[0]!.sessionId).toBe(before!.sessionId);

    const renewed = deviceCertificate(home);
    expect(fingerprintOf(renewed)).not.toBe(fingerprintOf(first));
    const ca = new X509Certificate(readFileSync(path.join(gateway.home, "pki", "ca.pem")));
    expect(issuedBy(renewed, ca)).toBe(true);
    expect(keyMatchesCertificate(home)).toBe(true);

    node.child.kill("SIGTERM");
    expect(await node.exited).toBe(0);
    await gateway.stop();
  });

  it("brings a node back by itself after it was offline past its certificate's expiry", async () => {
    const gateway = await startTestGateway();
    const { home, deviceId } = await registeredNode(gateway, "sleeper");
    const registered = await deviceShow(gateway, deviceId);
    // Offline overnight: its certificate (a day's life, issued two days ago) ran out yesterday.
    const day = 24 * 3600_000;
    const expired = await backdateDeviceCertificate(gateway.home, home, { agoMs: 2 * day, lifeMs: day });
    const notAfter = new Date(expired.validTo).getTime();
    expect(notAfter).toBeLessThan(Date.now() - day / 2);

    const node = spawnCli(["node", "start", "--home", home]);
    await waitConnected(node);
    const lines = node.logLines();
    const refused = lines.findIndex(
      (l) => l.state === "backoff" && String(l.reason).startsWith("cert_expired"),
    );
    const reissued = lines.findIndex((l) => l.msg === "certificate re-issued");
    const connected = lines.findIndex((l) => l.state === "connected");
    expect(refused).toBeGreaterThanOrEqual(0);
    expect(reissued).toBeGreaterThan(refused);
    expect(connected).toBeGreaterThan(reissued);
    expect(new Date(deviceCertificate(home).validTo).getTime()).toBeGreaterThan(Date.now());

    const shown = await deviceShow(gateway, deviceId);
    expect(shown.status).toBe("approved");
    expect(shown.certExpiresAt).not.toBeNull();
    // The gateway's record follows the certificate it re-issued.
    expect(shown.certFingerprint).not.toBe(registered.certFingerprint);
    expect(shown.certFingerprint).toBe(fingerprintOf(deviceCertificate(home)));
    expect(new Date(shown.certExpiresAt!).getTime()).toBe(
      new Date(deviceCertificate(home).validTo).getTime(),
    );

    node.child.kill("SIGTERM");
    expect(await node.exited).toBe(0);
    await gateway.stop();
  });

  it("refuses a revoked node's certificate at the TLS layer once the CRL is updated, and its re-issue", async () => {
    const gateway = await startTestGateway();
    const { home, deviceId } = await registeredNode(gateway, "doomed");
    const credentials = nodeTls(home);
    const serial = new X509Certificate(credentials.cert).serialNumber;

    // Measurement (b): one renewal on the wire, over a fresh connection with the node's credential.
    const traffic = await renewalOnTheWire(gateway.url, home);
    expect(traffic.status).toBe(200);
    const perRenewal = traffic.wire.sent + traffic.wire.received;
    console.log(
      `[lifecycle] one renewal over a fresh mTLS connection: ${traffic.wire.sent} B sent + ${traffic.wire.received} B received = ${perRenewal} B on the wire ` +
        `(HTTP above TLS: ${traffic.http.sent} + ${traffic.http.received} B); at a 24 h lifetime (a renewal every 16 h, 1.5/day): ` +
        `${Math.round(perRenewal * 1.5)} B per node per day, ${((perRenewal * 1.5 * 1e6) / 1e9).toFixed(2)} GB per day per million nodes`,
    );

    // Measurement (a): from the revoke command returning to the close (4403) of a live session.
    const session = await openDirectSession(gateway.url, home);
    const revokeStarted = Date.now();
    const revoked = await runJson<{ sessionsClosed: number }>([
      "devices",
      "revoke",
      deviceId,
      "--home",
      gateway.home,
    ]);
    const revokeReturned = Date.now();
    expect(revoked.sessionsClosed).toBe(1);
    const closed = await session.closed;
    expect(closed).toMatchObject({ code: 4403, reason: "device_revoked" });
    const gatewayDone = withMsg(gateway.process, "device revoked")[0]?.time as number | undefined;
    console.log(
      `[lifecycle] revoke → session close: the 4403 arrived ${closed.at - revokeReturned} ms after \`devices revoke\` returned ` +
        `(${closed.at - revokeStarted} ms after the command was started; the CLI round trip took ${revokeReturned - revokeStarted} ms; ` +
        `${gatewayDone === undefined ? "?" : gatewayDone - closed.at} ms before the gateway logged "device revoked")`,
    );

    // A new TLS connection with that certificate: the handshake's CRL check names it revoked.
    const validate = await httpsRequest(`${gateway.url}/api/v1/auth/validate`, { tls: credentials });
    expect(validate.status).toBe(403);
    const refusal = validate.json<{ error: string; error_description: string }>();
    expect(refusal.error).toBe("device_revoked");
    expect(refusal.error_description).toMatch(/CRL/);

    // The CRL the gateway publishes lists the certificate's serial.
    const crl = await httpsRequest(`${gateway.url}/api/v1/crl`, { tls: { ca: credentials.ca } });
    expect(crl.status).toBe(200);
    const text = execFileSync("openssl", ["crl", "-inform", "DER", "-noout", "-text"], {
      input: crl.body,
    }).toString();
    const listed = [...text.matchAll(/Serial Number: *([0-9A-Fa-f]+)/g)].map((m) => m[1]!.toUpperCase());
    expect(listed).toContain(serial.toUpperCase());

    // No new certificate for it, by challenge either: the challenge is issued to anyone (it tells
    // nothing of the device), and the revocation is named once the node has signed it.
    const challenge = await httpsRequest(`${gateway.url}/api/v1/certs/challenge`, {
      tls: { ca: credentials.ca },
      body: { deviceId },
    });
    expect(challenge.status).toBe(200);
    const nonce = challenge.json<{ challenge: string }>().challenge;
    const reissue = await httpsRequest(`${gateway.url}/api/v1/certs/reissue`, {
      tls: { ca: credentials.ca },
      body: {
        deviceId,
        challenge: nonce,
        signature: sign("sha256", reissueProof(deviceId, nonce), {
          key: createPrivateKey(credentials.key),
          dsaEncoding: "ieee-p1363",
        }).toString("base64url"),
        csr: await createCsr(await importKeyPairPem(credentials.key), deviceId),
      },
    });
    expect(reissue.status).toBe(403);
    expect(reissue.json<{ error: string }>().error).toBe("device_revoked");

    const start = await runCli(["node", "start", "--home", home]);
    expect(start.code).toBe(1);
    expect(start.stderr).toContain("device_revoked");
    await gateway.stop();
  });

  it(
    "rotates the CA under two connected nodes without losing or refusing a session",
    { timeout: LONG_TEST_MS },
    async () => {
      const gateway = await startTestGateway({
        configure: shortLifetimes({ clientCert: CLIENT_CERT_SECONDS }),
      });
      // Each node starts as soon as it is registered: its certificate's life is spent connected and
      // renewing, not waiting on disk while the other node registers.
      const homes: string[] = [];
      const nodes: Running[] = [];
      for (const name of ["left", "right"]) {
        const { home } = await registeredNode(gateway, name);
        const node = spawnCli(["node", "start", "--home", home]);
        await waitConnected(node);
        homes.push(home);
        nodes.push(node);
      }

      // Nodes follow a rotation at their next renewal. The overlap is at least a certificate's life
      // (the gateway requires it) and outlasts a renewal interval by seconds to spare, so every
      // node renews with the new CA before the previous one is retired.
      const renewalSeconds = renewalAfter(CLIENT_CERT_SECONDS);
      const overlapSeconds = CLIENT_CERT_SECONDS + 8;
      const rotation = await runJson<{ nextFingerprint: string; previousFingerprint: string }>([
        "rotate",
        "ca",
        "--overlap",
        `${overlapSeconds}s`,
        "--home",
        gateway.home,
      ]);
      expect(rotation.previousFingerprint).toBe(gateway.caFingerprint);
      expect(rotation.nextFingerprint).not.toBe(gateway.caFingerprint);
      await waitForMsg(gateway.process, "CA rotation started");
      for (const node of nodes)
        await waitForMsg(node, "followed the gateway's CA rotation", 1, patiently(renewalSeconds));
      for (const home of homes) {
        const config = JSON.parse(readFileSync(path.join(home, "node.json"), "utf8")) as {
          caFingerprint: string;
        };
        expect(config.caFingerprint).toBe(rotation.nextFingerprint);
        const bundle = pemBundle(path.join(home, "ca.pem")).map(fingerprintOf);
        expect(bundle).toEqual([rotation.previousFingerprint, rotation.nextFingerprint]);
      }

      await waitForMsg(gateway.process, "previous CA retired", 1, patiently(overlapSeconds));
      // Past at least one more renewal each with the previous CA gone.
      const renewals = nodes.map((node) => withMsg(node, "certificate renewed").length);
      for (const [i, node] of nodes.entries())
        await waitForMsg(node, "certificate renewed", renewals[i]! + 1, patiently(renewalSeconds));
      await sleep(1000);

      for (const node of nodes) {
        expect(statesSinceConnected(node), node.stdout).toEqual(["connected"]);
        expect(withMsg(node, "followed the gateway's CA rotation")).toHaveLength(1);
      }
      const newCa = new X509Certificate(readFileSync(path.join(gateway.home, "pki", "ca.pem")));
      expect(fingerprintOf(newCa)).toBe(rotation.nextFingerprint);
      for (const home of homes) {
        expect(issuedBy(deviceCertificate(home), newCa)).toBe(true);
        const { exit, result } = await testConnection(home);
        expect(result.error).toBeNull();
        expect(result.layers.every((layer) => layer.ok)).toBe(true);
        expect(exit).toBe(0);
      }

      // The admin CLI still works: the gateway re-issued its own admin credential with the new CA.
      const listed = await nodesList(gateway);
      expect(listed).toHaveLength(2);
      expect(listed.every((n) => n.online)).toBe(true);

      // And the server certificate now chains to the new CA.
      const presented = await presentedServerCertificate(gateway.url);
      expect(presented.issuer && fingerprintOf(presented.issuer)).toBe(rotation.nextFingerprint);
      expect(issuedBy(presented.leaf, newCa)).toBe(true);

      for (const node of nodes) node.child.kill("SIGTERM");
      for (const node of nodes) expect(await node.exited).toBe(0);
      await gateway.stop();
    },
  );

  it(
    "leaves a working credential after kill -9 at any moment around renewals",
    { timeout: LONG_TEST_MS },
    async () => {
      const gateway = await startTestGateway({
        configure: shortLifetimes({ clientCert: CLIENT_CERT_SECONDS }),
      });
      const { home } = await registeredNode(gateway, "crashy");
      const ca = new X509Certificate(readFileSync(path.join(gateway.home, "pki", "ca.pem")));
      // Six kills, each a few ms after the moment the node's renewal is due (the node's
      // own renewalTime), so they land before, inside and after the request and the file swap.
      const offsetsMs = [0, 8, 16, 25, 40, 60];
      const outcomes: string[] = [];
      for (const offset of offsetsMs) {
        const before = fingerprintOf(deviceCertificate(home));
        const node = spawnCli(["node", "start", "--home", home]);
        await waitConnected(node);
        const { renewAt } = renewalTime(readFileSync(path.join(home, "device.pem"), "utf8"));
        await sleep(Math.max(0, renewAt.getTime() - Date.now()) + offset);
        node.child.kill("SIGKILL");
        await node.exited;
        // Whatever the moment, the files left behind are a certificate of this CA for this key.
        expect(keyMatchesCertificate(home)).toBe(true);
        expect(issuedBy(deviceCertificate(home), ca)).toBe(true);
        const swapped = fingerprintOf(deviceCertificate(home)) !== before;
        const logged = withMsg(node, "certificate renewed").length > 0;
        outcomes.push(swapped ? (logged ? "after" : "after the swap, before the log") : "before the swap");
      }
      const leftovers = readdirSync(home).filter((name) => name.endsWith(".tmp"));
      console.log(
        `[lifecycle] kill -9 relative to the renewal: ${outcomes.join(", ")}; temporary files left: ${leftovers.length}`,
      );

      const node = spawnCli(["node", "start", "--home", home]);
      await waitConnected(node);
      expect(keyMatchesCertificate(home)).toBe(true);
      const { exit, result } = await testConnection(home);
      expect(result.error).toBeNull();
      expect(exit).toBe(0);
      node.child.kill("SIGTERM");
      expect(await node.exited).toBe(0);
      await gateway.stop();
    },
  );

  it(
    "renews and hot-swaps the gateway's own server certificate without a restart",
    { timeout: LONG_TEST_MS },
    async () => {
      const gateway = await startTestGateway({
        configure: shortLifetimes({ serverCert: SERVER_CERT_SECONDS }),
      });
      const { home } = await registeredNode(gateway, "watcher");
      const node = spawnCli(["node", "start", "--home", home]);
      await waitConnected(node);
      const before = await presentedServerCertificate(gateway.url);
      const renewedSoFar = withMsg(gateway.process, "server certificate renewed").length;

      await waitForMsg(
        gateway.process,
        "server certificate renewed",
        renewedSoFar + 1,
        patiently(renewalAfter(SERVER_CERT_SECONDS)),
      );
      const after = await presentedServerCertificate(gateway.url);
      expect(fingerprintOf(after.leaf)).not.toBe(fingerprintOf(before.leaf));
      // Issued with the configured life (notBefore is backdated 60 s), not the year `gateway init` gave.
      const life = new Date(after.leaf.validTo).getTime() - new Date(after.leaf.validFrom).getTime();
      expect(life).toBe(60_000 + SERVER_CERT_SECONDS * 1000);
      expect(after.issuer && fingerprintOf(after.issuer)).toBe(gateway.caFingerprint);
      expect(withMsg(gateway.process, "gateway listening")).toHaveLength(1);

      // The node's session lived through it.
      expect(statesSinceConnected(node), node.stdout).toEqual(["connected"]);
      const [listed] = await nodesList(gateway);
      expect(listed?.online).toBe(true);
      const { exit } = await testConnection(home);
      expect(exit).toBe(0);

      node.child.kill("SIGTERM");
      expect(await node.exited).toBe(0);
      await gateway.stop();
    },
  );
});
