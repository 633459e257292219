// Encryption keys and the wrapping of data keys, in the browser: protocol_spec/ENCRYPTION.md
// sections 2.1-2.2, 3.1, 3.3 and 4.1, byte for byte what protocol_spec/enckeys.py does.
//
// The KEM is MLKEM768-X25519 exactly as `cryptography`'s hpke.KEM.MLKEM768_X25519 implements
// it: X-Wing (draft-connolly-cfrg-xwing-kem, HPKE KEM id 0x647A of draft-ietf-hpke-pq), whose
// shared secret is SHA3-256(ss_M || ss_X || ct_X || pk_X || "\.//^\"), enc = the ML-KEM-768
// ciphertext (1088 bytes) || the ephemeral X25519 key (32), the public key = the ML-KEM-768
// encapsulation key (1184) || the X25519 key (32). Its private key, though, is the expanded
// one that Ostraca keeps: the ML-KEM-768 seed d || z (64 bytes) || the X25519 private key (32),
// where X-Wing proper would expand a 32-byte seed into those 96 bytes with SHAKE256. noble's
// combineKEMS with an identity expansion is exactly that. HPKE (RFC 9180) runs in base mode,
// single shot, with HKDF-SHA256 and AES-256-GCM (WebCrypto), aad empty, as SUITE does in Python.
// Nothing here leaves the page: private keys are Uint8Arrays held by the caller.
import {
  combineKEMS, ecdhKem, expand, extract, hmac, ml_kem768, sha256, sha3_256, x25519,
} from "./vendor/noble.js";
import { concat, fromHex, hex } from "./sign.js";

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

export const KEM_NAME = "MLKEM768-X25519";
export const SUITE_NAME = "MLKEM768-X25519/HKDF-SHA256/AES-256-GCM";
export const SECRET_BYTES = 96;
export const PUBLIC_BYTES = 1216;
const ENC_BYTES = 1120;
export const WRAPPED_BYTES = ENC_BYTES + 32 + 16;
const DERIVE_LABEL = "ostraca-encryption-key-v1";
const WRAP_LABEL = encoder.encode("ostraca-key-wrap-v1\0");
const COMMITMENT_LABEL = encoder.encode("ostraca-data-key-commitment-v1\0");
const XWING_LABEL = encoder.encode("\\.//^\\");
const HPKE_V1 = encoder.encode("HPKE-v1");

export class WrongKeyError extends Error {}

function uint(value, nbytes) {
  const out = new Uint8Array(nbytes);
  const view = new DataView(out.buffer);
  if (nbytes === 2) view.setUint16(0, value);
  else view.setBigUint64(0, BigInt(value));
  return out;
}

// KEM 0x647A, KDF HKDF-SHA256 (0x0001), AEAD AES-256-GCM (0x0002): RFC 9180 section 5.1.
const SUITE_ID = concat(encoder.encode("HPKE"), uint(0x647a, 2), uint(1, 2), uint(2, 2));

export const kem = combineKEMS(
  SECRET_BYTES,
  32,
  (secret) => secret,
  (pk, ct, ss) => sha3_256(concat(ss[0], ss[1], ct[1], pk[1], XWING_LABEL)),
  ml_kem768,
  ecdhKem(x25519)
);

// What the identity signs to derive encryption key number `epoch` (section 3.3).
export function derivationMessage(epoch = 0) {
  return encoder.encode(`${DERIVE_LABEL}\n${epoch}`);
}

// The key pair derived from the identity's Ed25519 signature over derivationMessage(epoch):
// {secret (96 bytes), publicKey (1216 bytes), keyid (hex SHA-256 of the public key)}.
export function keyFromSignature(signature) {
  if (signature.length !== 64) throw new Error("an Ed25519 signature is 64 bytes");
  const secret = expand(sha256, extract(sha256, signature, EMPTY), encoder.encode(DERIVE_LABEL), SECRET_BYTES);
  return keyPair(secret);
}

export function keyPair(secret) {
  const publicKey = kem.getPublicKey(secret);
  return { secret, publicKey, keyid: keyId(publicKey) };
}

// The encryption key id: hex SHA-256 of the 1216 public key bytes.
export function keyId(publicKey) {
  return hex(sha256(publicKey));
}

function short(text) {
  const raw = encoder.encode(text);
  if (raw.length > 0xffff) throw new Error("a name is longer than 65535 bytes");
  return concat(uint(raw.length, 2), raw);
}

// CTX of a group context (section 2.1).
export function groupContext(dataset, version, group) {
  if (!Number.isSafeInteger(version) || version < 1) throw new Error(`version ${version} is out of range`);
  return concat(short(dataset), uint(version, 8), short(group));
}

// The HPKE info of one wrapped key (section 4.1): grantee and recipient are hex key ids.
export function wrapInfo(context, grantee, recipient) {
  return concat(WRAP_LABEL, context, fromHex(grantee, 32), fromHex(recipient, 32));
}

// The key commitment of data key `key` for `context` (section 2.2), hex.
export function commitment(key, context) {
  return hex(hmac(sha256, key, concat(COMMITMENT_LABEL, context)));
}

function labeledExtract(salt, label, ikm) {
  return extract(sha256, concat(HPKE_V1, SUITE_ID, encoder.encode(label), ikm), salt);
}

function labeledExpand(prk, label, info, length) {
  return expand(sha256, prk, concat(uint(length, 2), HPKE_V1, SUITE_ID, encoder.encode(label), info), length);
}

// RFC 9180 KeySchedule in base mode (no PSK): the AES-256-GCM key and the nonce of message 0.
async function keySchedule(sharedSecret, info) {
  const context = concat(
    new Uint8Array([0]),
    labeledExtract(EMPTY, "psk_id_hash", EMPTY),
    labeledExtract(EMPTY, "info_hash", info)
  );
  const secret = labeledExtract(sharedSecret, "secret", EMPTY);
  const raw = labeledExpand(secret, "key", context, 32);
  const key = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
  raw.fill(0);
  return { key, iv: labeledExpand(secret, "base_nonce", context, 12) };
}

// HPKE single-shot seal of `plaintext` to `publicKey` (randomized): enc || ciphertext.
export async function seal(publicKey, info, plaintext) {
  if (publicKey.length !== PUBLIC_BYTES) throw new Error(`an ${KEM_NAME} public key is ${PUBLIC_BYTES} bytes`);
  const { cipherText, sharedSecret } = kem.encapsulate(publicKey);
  const { key, iv } = await keySchedule(sharedSecret, info);
  sharedSecret.fill(0);
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, plaintext);
  return concat(cipherText, new Uint8Array(sealed));
}

// Open what seal() made for the key pair of `secret`; WrongKeyError when it was not sealed to
// that key with this info.
export async function open(secret, info, wrapped) {
  if (wrapped.length !== WRAPPED_BYTES) throw new WrongKeyError(`a wrapped key is ${WRAPPED_BYTES} bytes`);
  const sharedSecret = kem.decapsulate(wrapped.subarray(0, ENC_BYTES), secret);
  const { key, iv } = await keySchedule(sharedSecret, info);
  sharedSecret.fill(0);
  try {
    return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv }, key, wrapped.subarray(ENC_BYTES)));
  } catch {
    throw new WrongKeyError("the wrapped key does not open with this encryption key for this context and grantee");
  }
}
