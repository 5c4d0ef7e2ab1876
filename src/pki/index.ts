export * from "./authority.js";
export * from "./csr.js";
export * from "./fingerprint.js";
export * from "./keys.js";
export { x509 } from "./x509.js";
export * from "./crl.js";
export * from "./ca-rotation.js";
export * from "./pem.js";
export * from "./server-names.js";
