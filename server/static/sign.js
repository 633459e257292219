// Signing in the browser, over exactly the bytes the Python SDK signs.
//
// canonical(): RFC 8785 canonical JSON (protocol_spec/canonical.py). RFC 8785 is defined by
//   ECMAScript's own JSON serialization: strings as JSON.stringify writes them, object keys
//   sorted by UTF-16 code units (what Array.prototype.sort does), no whitespace. Signed
//   statements hold integers only, never floats.
// pae(): DSSE v1 pre-authentication encoding (protocol_spec/envelope.py).
// loginMessage(): "ostraca-login-v1\n" + nonce (protocol_spec/auth.py).
// importIdentity(): a PKCS#8 PEM (optionally encrypted with PBES2: PBKDF2 + AES-CBC, which is
//   what `ostraca keygen --passphrase` writes) imported into WebCrypto Ed25519. The key that is
//   kept is non-extractable; a short-lived extractable copy is made only to read the public
//   key (PKCS#8 files of Ed25519 keys do not carry it) and is dropped at once.

const encoder = new TextEncoder();

export class KeyFileError extends Error {}

export function canonical(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Error("signed statements hold integers only");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort();
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  throw new Error("value cannot be canonicalized: " + typeof value);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function pae(payloadType, payload) {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} `);
  const mid = encoder.encode(` ${payload.length} `);
  return concat(head, type, mid, payload);
}

export function loginMessage(nonce) {
  return encoder.encode("ostraca-login-v1\n" + nonce);
}

export function toBase64(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text, nbytes) {
  if (typeof text !== "string" || text.length !== 2 * nbytes || !/^[0-9a-f]*$/.test(text)) {
    throw new Error(`not ${nbytes} bytes of lowercase hex`);
  }
  return Uint8Array.from(text.match(/../g) || [], (pair) => parseInt(pair, 16));
}

export function randomHex(nbytes) {
  return hex(crypto.getRandomValues(new Uint8Array(nbytes)));
}

export function timestamp(date = new Date()) {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

// --- PEM and the little DER it takes to open an encrypted PKCS#8 file -----------------------

function readPem(text) {
  const match = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(text);
  if (!match) {
    throw new KeyFileError(
      "This file is not a PEM key file: choose the identity.pem that `ostraca keygen` wrote."
    );
  }
  try {
    return { label: match[1], der: fromBase64(match[2].replace(/\s+/g, "")) };
  } catch {
    throw new KeyFileError("This PEM file is damaged: its base64 body does not decode.");
  }
}

function derItems(bytes) {
  const items = [];
  let at = 0;
  while (at < bytes.length) {
    const tag = bytes[at];
    let length = bytes[at + 1];
    let start = at + 2;
    if (length & 0x80) {
      const n = length & 0x7f;
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + bytes[start + i];
      start += n;
    }
    if (start + length > bytes.length) throw new KeyFileError("The key file is damaged.");
    items.push({ tag, value: bytes.subarray(start, start + length) });
    at = start + length;
  }
  return items;
}

const OIDS = {
  "2a864886f70d01050d": "PBES2",
  "2a864886f70d01050c": "PBKDF2",
  "2a864886f70d0207": "SHA-1",
  "2a864886f70d0209": "SHA-256",
  "2a864886f70d020a": "SHA-384",
  "2a864886f70d020b": "SHA-512",
  "608648016503040102": 128,
  "60864801650304012a": 256,
};

function unsupported(what) {
  return new KeyFileError(
    `This key file is encrypted with ${what}, which the browser's WebCrypto cannot decrypt. ` +
      "Re-encrypt it with `openssl pkcs8 -topk8 -v2 aes-256-cbc -v2prf hmacWithSHA256`, " +
      "or use the command line."
  );
}

function pbes2Parameters(der) {
  const [info] = derItems(der);
  const [algorithm, encrypted] = derItems(info.value);
  const [schemeOid, schemeParams] = derItems(algorithm.value);
  if (OIDS[hex(schemeOid.value)] !== "PBES2") throw unsupported("a scheme other than PBES2");
  const [kdf, cipher] = derItems(schemeParams.value);
  const [kdfOid, kdfParams] = derItems(kdf.value);
  if (OIDS[hex(kdfOid.value)] !== "PBKDF2") throw unsupported("a key derivation other than PBKDF2");
  const [salt, iterations, ...rest] = derItems(kdfParams.value);
  const prf = rest.find((item) => item.tag === 0x30);
  const hash = prf ? OIDS[hex(derItems(prf.value)[0].value)] : "SHA-1";
  const [cipherOid, iv] = derItems(cipher.value);
  const bits = OIDS[hex(cipherOid.value)];
  if (typeof hash !== "string" || typeof bits !== "number") {
    throw unsupported("a cipher or hash other than AES-128/256-CBC with HMAC-SHA");
  }
  const rounds = iterations.value.reduce((n, b) => n * 256 + b, 0);
  return { salt: salt.value, rounds, hash, bits, iv: iv.value, data: encrypted.value };
}

async function decryptPkcs8(p, passphrase) {
  const secret = await crypto.subtle.importKey(
    "raw", encoder.encode(passphrase), "PBKDF2", false, ["deriveKey"]
  );
  const aes = await crypto.subtle.deriveKey(
    { name: "PBKDF2", salt: p.salt, iterations: p.rounds, hash: p.hash },
    secret,
    { name: "AES-CBC", length: p.bits },
    false,
    ["decrypt"]
  );
  try {
    return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv: p.iv }, aes, p.data));
  } catch {
    throw new KeyFileError("Wrong passphrase: the key file could not be decrypted.");
  }
}

export class PassphraseNeeded extends KeyFileError {}

async function importEd25519(pkcs8, extractable) {
  try {
    return await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, extractable, [
      "sign",
    ]);
  } catch {
    throw new KeyFileError(
      "This is not an Ed25519 private key (or the passphrase is wrong): Ostraca identities are " +
        "Ed25519 keys made by `ostraca keygen`."
    );
  }
}

// The identity in a PEM file: {key (non-extractable CryptoKey), keyid, publicKey (base64)}.
export async function importIdentity(text, passphrase) {
  const pem = readPem(text);
  let pkcs8 = pem.der;
  if (pem.label === "ENCRYPTED PRIVATE KEY") {
    const encryption = pbes2Parameters(pem.der);
    if (!passphrase) throw new PassphraseNeeded("This key file is protected by a passphrase: enter it.");
    pkcs8 = await decryptPkcs8(encryption, passphrase);
  } else if (pem.label !== "PRIVATE KEY") {
    throw new KeyFileError(
      `This file holds a ${pem.label.toLowerCase()}, not a private key: choose identity.pem, ` +
        "not identity.pub.json or another file."
    );
  }
  const readable = await importEd25519(pkcs8, true);
  const jwk = await crypto.subtle.exportKey("jwk", readable);
  const raw = fromBase64(jwk.x.replace(/-/g, "+").replace(/_/g, "/") + "=");
  const key = await importEd25519(pkcs8, false);
  const keyid = hex(new Uint8Array(await crypto.subtle.digest("SHA-256", raw)));
  return { key, keyid, publicKey: toBase64(raw) };
}

export async function sign(key, message) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, message));
}

// A DSSE envelope of `statement`, signed by `key` (whose id is `keyid`), as canonical JSON text:
// the same bytes sign_statement() and Envelope.to_json() give in Python (Ed25519 is
// deterministic).
export async function signEnvelope(key, keyid, payloadType, statement) {
  const payload = encoder.encode(canonical(statement));
  const sig = await sign(key, pae(payloadType, payload));
  return canonical({
    payload: toBase64(payload),
    payloadType,
    signatures: [{ keyid, sig: toBase64(sig) }],
  });
}

export const PAYLOAD_TYPES = {
  request: "application/vnd.ostraca.access-request+json",
  grant: "application/vnd.ostraca.access-grant+json",
  revocation: "application/vnd.ostraca.revocation+json",
  encryptionKey: "application/vnd.ostraca.encryption-key+json",
  keyGrant: "application/vnd.ostraca.key-grant+json",
  manifest: "application/vnd.ostraca.manifest+json",
};

export class StatementError extends Error {}

// The Ed25519 public keys of `keys` (items {keyid, public: base64 of 32 bytes}) by key id, each
// id checked to be the SHA-256 of its key (a listed id is never taken on trust).
export async function trustedKeys(keys) {
  const out = new Map();
  for (const k of keys) {
    const raw = fromBase64(k.public);
    if (raw.length !== 32 || hex(new Uint8Array(await crypto.subtle.digest("SHA-256", raw))) !== k.keyid) {
      throw new StatementError(`the registry lists key ${k.keyid.slice(0, 16)}… with another key's bytes`);
    }
    out.set(k.keyid, await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]));
  }
  return out;
}

// SPEC.md 5 checks 1-3 of an envelope (an object as the registry lists it): its payload type,
// a signature by one of `trusted` (from trustedKeys) over PAE(payloadType, payload), and a
// canonical JSON payload. Returns {statement, signer (key id)}; StatementError otherwise.
export async function openEnvelope(envelope, payloadType, trusted, what) {
  if (envelope?.payloadType !== payloadType) throw new StatementError(`${what} is not a ${payloadType} statement`);
  const payload = fromBase64(envelope.payload);
  const message = pae(payloadType, payload);
  for (const s of envelope.signatures || []) {
    const key = trusted.get(s.keyid);
    if (key && (await crypto.subtle.verify({ name: "Ed25519" }, key, fromBase64(s.sig), message))) {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(payload);
      const statement = JSON.parse(text);
      if (canonical(statement) !== text) throw new StatementError(`${what} is not canonical JSON`);
      return { statement, signer: s.keyid };
    }
  }
  throw new StatementError(`${what} is not signed by a key it should be signed by`);
}
