// @peculiar/x509 needs the Reflect metadata polyfill loaded before it; import x509 only through
// this module so that order holds everywhere.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { webcrypto } from "node:crypto";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
export const subtle = webcrypto.subtle as unknown as SubtleCrypto;
