import { x509 } from "./x509.js";

/**
 * DER bytes as PEM text (RFC 7468 §2): base64 lines of 64 characters between `-----BEGIN label-----`
 * and `-----END label-----`, ending with a newline. Every PEM this product writes is made here:
 * without the final newline, `cat ca.pem other.pem > bundle.pem` joins an END and a BEGIN line
 * into one, which OpenSSL and curl reject ("bad end line").
 * @param der the encoded object (certificate, CSR, CRL, PKCS#8 key)
 * @param label e.g. "CERTIFICATE", "CERTIFICATE REQUEST", "X509 CRL", "PRIVATE KEY"
 */
export function encodePem(der: BufferSource, label: string): string {
  return x509.PemConverter.encode(der, label).trimEnd() + "\n";
}
