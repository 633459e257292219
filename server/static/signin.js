// Sign in: import the identity file, sign the registry's one-time nonce, keep the session.
import { ensureEncryptionKey } from "./keygrants.js";
import { api, clearSession, explain, getSession, saveSession, show } from "./ostraca.js";
import { importIdentity, KeyFileError, loginMessage, PassphraseNeeded, sign, toBase64 } from "./sign.js";

const form = document.getElementById("signin-form");
const passphraseField = document.getElementById("passphrase-field");
const passphrase = document.getElementById("passphrase");

async function logIn(identity) {
  const challenge = await api("POST", "/v1/auth/challenge", {
    auth: false,
    body: { keyid: identity.keyid },
  });
  const signature = await sign(identity.key, loginMessage(challenge.nonce));
  return api("POST", "/v1/auth/token", {
    auth: false,
    body: { keyid: identity.keyid, nonce: challenge.nonce, signature: toBase64(signature) },
  });
}

async function showSession() {
  const session = await getSession();
  document.getElementById("session").hidden = !session;
  if (session) {
    const p = session.principal;
    document.getElementById("session-text").textContent =
      `${p.name} (${p.kind}, ${p.affiliation}), key ${session.keyid.slice(0, 16)}…, ` +
      `session until ${session.expires}.`;
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("keyfile").files[0];
  if (!file) return show("Choose your identity file first.", "problem");
  let identity;
  try {
    identity = await importIdentity(await file.text(), passphrase.value);
  } catch (error) {
    if (error instanceof PassphraseNeeded) {
      passphraseField.hidden = false;
      show(error.message, "problem");
      return passphrase.focus();
    }
    return show(error instanceof KeyFileError ? error.message : `The key could not be read: ${error.message}`, "problem");
  }
  try {
    const token = await logIn(identity);
    await saveSession({ ...identity, token: token.token, expires: token.expires, principal: token.principal });
  } catch (error) {
    return show(
      error.status === 401
        ? `The registry refused this key: ${error.message}. Is it registered (ostraca register)?`
        : explain(error),
      "problem"
    );
  }
  passphrase.value = "";
  const session = await getSession();
  const p = session.principal;
  try {
    await ensureEncryptionKey(session); // publishers wrap data keys to it when they approve
    show(`Signed in as ${p.name}.`);
  } catch (error) {
    show(`Signed in as ${p.name}, but your encryption key could not be registered: ${explain(error)}`, "problem");
  }
  document.getElementById("who").textContent = `Signed in as ${p.name} (${p.kind})`;
  await showSession();
});

document.getElementById("signout").addEventListener("click", async () => {
  try {
    await api("DELETE", "/v1/auth/token");
  } catch {
    // the session may have ended already; it is forgotten here either way
  }
  await clearSession();
  document.getElementById("who").textContent = "";
  await showSession();
  show("Signed out: the key was removed from this browser.");
});

showSession();
