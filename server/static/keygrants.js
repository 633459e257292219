// Data keys in the browser: what client/keyflow.py does for the SDK (ENCRYPTION.md 3.2-4.5, 6).
//
// - ownEncryptionKey(): the signed-in principal's encryption key, derived from its identity
//   (a WebCrypto Ed25519 signature over the derivation message, then HKDF). It exists only in
//   this page's memory: never stored, never sent.
// - ensureEncryptionKey(): registers its public half (a signed EncryptionKey) if it is not yet.
// - approvalKeys() before a grant is signed: the encrypted groups the grant covers (its versions,
//   and only its `groups` when it names some: SPEC 3.3) read from their signed manifests, the publisher's escrow fetched, verified against
//   the namespace's keys and opened, each key checked against its manifest's commitment, and
//   the grantee's current EncryptionKey verified against the grantee's own Ed25519 key; it
//   refuses (KeyFlowError) rather than let an encrypted dataset be granted without keys.
// - postKeyGrant() after the grant is stored: those keys HPKE-sealed to the grantee's key in a
//   KeyGrant signed here and posted.
import { api } from "./ostraca.js";
import * as hpke from "./hpke.js";
import {
  fromBase64, openEnvelope, PAYLOAD_TYPES, sign, signEnvelope, StatementError, timestamp,
  toBase64, trustedKeys,
} from "./sign.js";

const CLOCK_SKEW_MS = 5 * 60 * 1000;

export class KeyFlowError extends Error {}

export async function ownEncryptionKey(session, epoch = 0) {
  return hpke.keyFromSignature(await sign(session.key, hpke.derivationMessage(epoch)));
}

async function encryptionKeys(keyid) {
  return (await api("GET", `/v1/principals/${keyid}/encryption-keys`, { auth: false })).items;
}

export async function ensureEncryptionKey(session) {
  const mine = await ownEncryptionKey(session);
  if (!(await encryptionKeys(session.keyid)).some((item) => item.keyid === mine.keyid)) {
    const statement = {
      spec_version: 1,
      owner: session.keyid,
      kem: hpke.KEM_NAME,
      public: toBase64(mine.publicKey),
      keyid: mine.keyid,
      created: timestamp(),
    };
    const envelope = await signEnvelope(session.key, session.keyid, PAYLOAD_TYPES.encryptionKey, statement);
    try {
      await api("POST", "/v1/encryption-keys", { body: envelope });
    } catch (error) {
      if (error.status !== 409) throw error; // 409: registered meanwhile (another tab)
    }
  }
  return mine;
}

function notFromFuture(created, what) {
  if (!(Date.parse(created) <= Date.now() + CLOCK_SKEW_MS)) {
    throw new StatementError(`${what} was created in the future (${created})`);
  }
}

// E1-E6 of one listed EncryptionKey: {keyid, publicKey, created}.
async function verifiedEncryptionKey(item, trusted, owner) {
  const what = `the encryption key ${String(item.keyid).slice(0, 16)}… the registry lists for the grantee`;
  const { statement: s, signer } = await openEnvelope(item.envelope, PAYLOAD_TYPES.encryptionKey, trusted, what);
  const publicKey = fromBase64(s.public);
  if (s.owner !== signer || s.owner !== owner) throw new StatementError(`${what} names another owner than its signer`);
  if (s.kem !== hpke.KEM_NAME || publicKey.length !== hpke.PUBLIC_BYTES) throw new StatementError(`${what} is not an ${hpke.KEM_NAME} key`);
  if (s.keyid !== hpke.keyId(publicKey)) throw new StatementError(`${what} has a key id that is not its key's`);
  notFromFuture(s.created, what);
  return { keyid: s.keyid, publicKey, created: s.created };
}

// The grantee's newest encryption key signed by exactly the grantee's key (never by whatever
// key the registry lists for it), or null when it registered none.
async function granteeEncryptionKey(grantee) {
  const principal = await api("GET", `/v1/principals/${grantee}`, { auth: false });
  const own = [...principal.keys, ...principal.rotated_keys].filter((k) => k.keyid === grantee);
  const trusted = await trustedKeys(own);
  let newest = null;
  for (const item of await encryptionKeys(principal.keyid)) {
    const key = await verifiedEncryptionKey(item, trusted, grantee);
    if (newest === null || Date.parse(key.created) >= Date.parse(newest.created)) newest = key;
  }
  return newest;
}

// W1-W8 of one escrow KeyGrant and its keys opened (W10): [{version, group, key}].
async function openEscrow(item, dataset, trusted, mine, publisher) {
  const what = `the escrow key grant ${String(item.key_grant_id).slice(0, 16)}… of ${dataset}`;
  const { statement: g, signer } = await openEnvelope(item.envelope, PAYLOAD_TYPES.keyGrant, trusted, what);
  if (g.publisher !== signer) throw new StatementError(`${what} names another publisher than its signer`);
  if (g.dataset !== dataset || g.grant !== null) throw new StatementError(`${what} is not an escrow of ${dataset}`);
  if (g.suite !== hpke.SUITE_NAME || !Array.isArray(g.keys)) throw new StatementError(`${what} is malformed`);
  notFromFuture(g.created, what);
  if (g.grantee !== publisher || g.recipient !== mine.keyid) return []; // another key's escrow
  const out = [];
  for (const k of g.keys) {
    const context = hpke.groupContext(dataset, k.version, k.group);
    const info = hpke.wrapInfo(context, g.grantee, g.recipient);
    const key = await hpke.open(mine.secret, info, fromBase64(k.wrapped));
    if (hpke.commitment(key, context) !== k.key_commitment) {
      throw new hpke.WrongKeyError(`${what}: the key of version ${k.version} group ${k.group} does not match its commitment`);
    }
    out.push({ version: k.version, group: k.group, key });
  }
  return out;
}

// Every data key this publisher escrowed for `dataset`, by "version/group".
async function escrowKeys(session, dataset, trusted) {
  const mine = await ownEncryptionKey(session);
  const keys = new Map();
  for (const item of (await api("GET", `/v1/datasets/${dataset}/key-grants`)).items) {
    if (item.grant_id !== null) continue;
    for (const k of await openEscrow(item, dataset, trusted, mine, session.keyid)) {
      keys.set(`${k.version}/${k.group}`, k);
    }
  }
  return keys;
}

function inRange(grant, version) {
  return version >= grant.min_version && (grant.max_version === null || version <= grant.max_version);
}

function covers(grant, version, group) {
  return inRange(grant, version) && (!grant.groups || grant.groups.includes(group));
}

// The keys `dataset`'s statements are checked against: its namespace's, active and rotated
// ones, as the SDK.
export async function namespaceTrust(dataset) {
  const namespace = await api("GET", `/v1/namespaces/${dataset.split("/")[0]}`, { auth: false });
  return trustedKeys(namespace.keys);
}

// The manifest of `dataset` at `version` (a number, or "latest"), verified against `trusted`.
export async function signedManifest(dataset, version, trusted) {
  const path = `/v1/datasets/${dataset}/versions/${version}/manifest`;
  const what = `the manifest of ${dataset} version ${version}`;
  const { statement: m } = await openEnvelope(await api("GET", path, { auth: false }), PAYLOAD_TYPES.manifest, trusted, what);
  if (m.dataset !== dataset || (version !== "latest" && m.version !== version)) {
    throw new StatementError(`${what} is another version's`);
  }
  return m;
}

// The encrypted groups of the versions `grant` covers, read from their signed manifests:
// [{version, group, commitment}].
async function encryptedGroups(grant, trusted) {
  const dataset = await api("GET", `/v1/datasets/${grant.dataset}`, { auth: false });
  const out = [];
  for (const { version } of dataset.versions.filter((v) => inRange(grant, v.version))) {
    const m = await signedManifest(grant.dataset, version, trusted);
    for (const [group, record] of Object.entries(m.encryption || {})) {
      if (covers(grant, version, group)) out.push({ version, group, commitment: record.key_commitment });
    }
  }
  return out;
}

// The data keys `grant` needs, from the escrow, each the one its signed manifest commits to.
async function grantedKeys(session, grant) {
  const trusted = await namespaceTrust(grant.dataset);
  const needed = await encryptedGroups(grant, trusted);
  if (!needed.length) return [];
  const escrow = await escrowKeys(session, grant.dataset, trusted);
  return needed.map(({ version, group, commitment }) => {
    const k = escrow.get(`${version}/${group}`);
    if (!k || hpke.commitment(k.key, hpke.groupContext(grant.dataset, version, group)) !== commitment) {
      throw new KeyFlowError(
        `Not approved: no escrowed data key of ${grant.dataset} version ${version} group ` +
          `${group} opens with this identity's encryption key, so the grant could not be read. ` +
          "Nothing was granted: approve with the identity that published it (or its successor, " +
          "once the escrow is re-wrapped)."
      );
    }
    return k;
  });
}

// Before `grant` (the unsigned AccessGrant) is signed: {recipient, keys} to wrap, or null when
// it covers no encrypted version. KeyFlowError when it cannot be granted with keys.
export async function approvalKeys(session, grant) {
  let keys;
  try {
    keys = await grantedKeys(session, grant);
  } catch (error) {
    if (!(error instanceof StatementError || error instanceof hpke.WrongKeyError)) throw error;
    throw new KeyFlowError(`Refused: ${error.message}. Nothing was granted: the registry's answer may have been tampered with.`);
  }
  if (!keys.length) return null;
  let recipient;
  try {
    recipient = await granteeEncryptionKey(grant.grantee);
  } catch (error) {
    if (!(error instanceof StatementError)) throw error;
    throw new KeyFlowError(`Refused: ${error.message}. Nothing was granted.`);
  }
  if (recipient === null) {
    throw new KeyFlowError(
      `Not approved: the requester has registered no encryption key, so a grant of the ` +
        `encrypted ${grant.dataset} could not be read. Nothing was granted: ask them to sign ` +
        "in on this site once (that registers it) or to request with `ostraca request`, then approve."
    );
  }
  return { recipient, keys };
}

// After the grant `grantId` is stored: the KeyGrant of `prepared` (from approvalKeys) signed
// and posted; returns how many keys it wraps.
export async function postKeyGrant(session, grant, grantId, prepared) {
  const { recipient } = prepared;
  const sorted = [...prepared.keys].sort((a, b) => a.version - b.version || (a.group < b.group ? -1 : 1));
  const keys = [];
  for (const k of sorted) {
    const context = hpke.groupContext(grant.dataset, k.version, k.group);
    const wrapped = await hpke.seal(recipient.publicKey, hpke.wrapInfo(context, grant.grantee, recipient.keyid), k.key);
    keys.push({ version: k.version, group: k.group, key_commitment: hpke.commitment(k.key, context), wrapped: toBase64(wrapped) });
  }
  const statement = {
    spec_version: 1,
    dataset: grant.dataset,
    publisher: session.keyid,
    grantee: grant.grantee,
    recipient: recipient.keyid,
    grant: grantId,
    suite: hpke.SUITE_NAME,
    keys,
    created: timestamp(),
  };
  const envelope = await signEnvelope(session.key, session.keyid, PAYLOAD_TYPES.keyGrant, statement);
  await api("POST", "/v1/key-grants", { body: envelope });
  return keys.length;
}
