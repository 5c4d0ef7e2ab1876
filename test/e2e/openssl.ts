import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";

/** A certificate and its private key, as PEM files and as their text. */
export interface OpensslCertificate {
  keyFile: string;
  certFile: string;
  key: string;
  cert: string;
}

/**
 * A self-signed P-256 certificate made by the openssl command line, not by the product's own PKI
 * code, so no gateway has ever seen its CA (a forgotten container's, a proxy's, a stranger's CA).
 * Writes `<name>.key` (unencrypted PKCS#8) and `<name>.pem` into `dir`, valid for 2 days, with
 * subject CN `commonName` and, when given, the subjectAltName extension `altNames` in openssl's
 * syntax (e.g. "DNS:gateway.example.com,IP:127.0.0.1"). Throws, with openssl's stderr, when it fails.
 */
export function opensslSelfSigned(
  dir: string,
  name: string,
  subject: { commonName: string; altNames?: string },
): OpensslCertificate {
  const keyFile = path.join(dir, `${name}.key`);
  const certFile = path.join(dir, `${name}.pem`);
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "2",
      "-subj",
      `/CN=${subject.commonName}`,
      ...(subject.altNames === undefined ? [] : ["-addext", `subjectAltName=${subject.altNames}`]),
    ],
    { stdio: "pipe" },
  );
  return { keyFile, certFile, key: readFileSync(keyFile, "utf8"), cert: readFileSync(certFile, "utf8") };
}
