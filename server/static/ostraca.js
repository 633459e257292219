// What every page shares: the signed-in session (kept in IndexedDB: the non-extractable key,
// its id, the bearer token), calls to the JSON API with problem+json turned into messages,
// the message area, and the copy buttons.

const DB = "ostraca";
const STORE = "session";

function database() {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
}

async function store(mode, action) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const request = action(db.transaction(STORE, mode).objectStore(STORE));
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function getSession() {
  return (await store("readonly", (s) => s.get("current"))) || null;
}

export async function saveSession(session) {
  await store("readwrite", (s) => s.put(session, "current"));
}

export async function clearSession() {
  await store("readwrite", (s) => s.delete("current"));
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "";
    this.hint = problem.hint || "";
  }
}

export const SESSION_ENDED =
  "Your session has expired or was ended: sign in again. Nothing was changed.";

// Call the JSON API; with `auth`, as the signed-in user. `body` is sent as is if it is a
// string (a signed envelope's exact bytes), else as JSON.
export async function api(method, path, { body, auth = true } = {}) {
  const headers = {};
  if (auth) {
    const session = await getSession();
    if (!session) throw new ApiError(401, { detail: "You are not signed in.", code: "signin" });
    if (Date.parse(session.expires) <= Date.now()) {
      throw new ApiError(401, { detail: SESSION_ENDED, code: "unauthenticated" });
    }
    headers.Authorization = `Bearer ${session.token}`;
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined || typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: `the registry answered ${response.status} ${response.statusText}` };
  }
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

// The sentence shown for a failed call; `notFound` says what a 404 means on this page.
export function explain(error, notFound) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error.message}`;
  if (error.code === "signin") return "You are not signed in: sign in with your key first.";
  if (error.status === 401) return SESSION_ENDED;
  if (error.status === 404 && notFound) return notFound;
  return error.message + (error.hint ? ` (${error.hint})` : "");
}

export function show(text, kind = "ok") {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = false;
  box.focus();
}

export function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

export function short(id) {
  return id ? `${id.slice(0, 12)}…` : "";
}

export function grantStatus(g) {
  if (g.revoked) return "revoked";
  if (Date.parse(g.expires) <= Date.now()) return "expired";
  if (Date.parse(g.not_before) > Date.now()) return "not yet valid";
  return "active";
}

export function grantVersions(g) {
  return g.max_version === null ? `${g.min_version} and later` : `${g.min_version} to ${g.max_version}`;
}

function setUpCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        show("Copied to the clipboard.");
      } catch {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        show("Selected: press Ctrl+C (or ⌘C) to copy.");
      }
    });
  }
}

async function showWho() {
  const session = await getSession();
  if (!session) return;
  const p = session.principal;
  document.getElementById("who").textContent = `Signed in as ${p.name} (${p.kind})`;
  document.getElementById("signin-link").textContent = "Account";
}

setUpCopyButtons();
showWho();
