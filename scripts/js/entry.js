// What server/static/vendor/noble.js exports: audited primitives the pages need and WebCrypto
// lacks (ML-KEM-768, X25519 as a KEM, SHA3-256, HKDF's two halves). Only re-exports: the
// composition (ENCRYPTION.md 3-4) is in server/static/hpke.js.
export { combineKEMS, _ecdhKem as ecdhKem } from "@noble/post-quantum/hybrid.js";
export { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
export { x25519 } from "@noble/curves/ed25519.js";
export { sha3_256 } from "@noble/hashes/sha3.js";
export { sha256 } from "@noble/hashes/sha2.js";
export { hmac } from "@noble/hashes/hmac.js";
export { expand, extract } from "@noble/hashes/hkdf.js";
