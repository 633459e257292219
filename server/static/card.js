// The dataset card: sign an AccessRequest for the terms shown and file it.
import { api, explain, getSession, show } from "./ostraca.js";
import { ensureEncryptionKey } from "./keygrants.js";
import { PAYLOAD_TYPES, randomHex, signEnvelope, timestamp } from "./sign.js";

const form = document.getElementById("request-form");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const session = await getSession();
  if (!session) return show("Sign in with your key first (Sign in, above).", "problem");
  const statement = {
    spec_version: 1,
    dataset: form.dataset.dataset,
    requester: session.keyid,
    purpose: document.getElementById("purpose").value,
    terms_sha256: form.dataset.termsSha256,
    accept_terms: true,
    created: timestamp(),
    nonce: randomHex(16),
  };
  try {
    await ensureEncryptionKey(session); // the publisher wraps the data keys to it when approving
    const envelope = await signEnvelope(session.key, session.keyid, PAYLOAD_TYPES.request, statement);
    const item = await api("POST", "/v1/requests", { body: envelope });
    form.reset();
    show(`Request sent: ${item.request_id.slice(0, 16)}…, status ${item.status}. Follow it under My requests.`);
  } catch (error) {
    show(explain(error, `${statement.dataset} is no longer on the registry: nothing was requested.`), "problem");
  }
});
