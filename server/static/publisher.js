// The publisher's page: the inbox of pending requests (approve: a grant signed here, the very
// one the SDK's approve signs, naming the column groups of the ticked columns; deny with a
// reason), the grants issued (revoke: a revocation signed here), and the audit log.
import {
  api, cell, explain, getSession, grantStatus, grantVersions, short, show,
} from "./ostraca.js";
import { approvalKeys, KeyFlowError, namespaceTrust, postKeyGrant, signedManifest } from "./keygrants.js";
import { PAYLOAD_TYPES, signEnvelope, timestamp } from "./sign.js";

const GONE = "The dataset is no longer on the registry: nothing was changed.";
const WITHDRAWN =
  "This request is no longer pending (it was withdrawn or decided meanwhile): nothing was " +
  "granted or denied.";
const layoutOf = new Map();

class NotGrantable extends Error {}

// The latest manifest of `dataset`, verified: what the SDK's approve reads its groups from.
async function latestManifest(dataset) {
  return signedManifest(dataset, "latest", await namespaceTrust(dataset));
}

// Each column group's columns in the manifest's column order, `default` first (SPEC 2.6, the
// SDK's DatasetManifest.group_columns); only `default` without column groups.
function groupColumns(m) {
  const named = (m.column_groups || []).map((g) => [g.name, new Set(g.columns)]);
  const taken = new Set(named.flatMap(([, cols]) => [...cols]));
  const order = m.columns.map((c) => c.name);
  return new Map([
    ["default", order.filter((c) => !taken.has(c))],
    ...named.map(([name, cols]) => [name, order.filter((c) => cols.has(c))]),
  ]);
}

async function datasetLayout(dataset) {
  if (!layoutOf.has(dataset)) layoutOf.set(dataset, groupColumns(await latestManifest(dataset)));
  return layoutOf.get(dataset);
}

// The grant's `columns` and `groups` for the ticked columns, as the SDK's approve builds them:
// every column (null) when none is ticked; else the ticked ones in the manifest's order, and on
// a dataset with column groups the groups they make up (DatasetManifest.groups_for), which
// must be whole groups: the registry serves a group's blobs whole or not at all.
async function columnScope(dataset, ticked) {
  if (!ticked.length) return { columns: null, groups: null };
  const m = await latestManifest(dataset);
  const columns = m.columns.map((c) => c.name).filter((c) => ticked.includes(c));
  if (columns.length !== ticked.length) {
    const gone = ticked.filter((c) => !columns.includes(c)).join(", ");
    throw new NotGrantable(`Not approved: ${gone} is no column of ${dataset} version ${m.version} (reload the page). Nothing was granted.`);
  }
  if (!m.column_groups) return { columns, groups: null };
  const layout = groupColumns(m);
  const groups = [...layout].filter(([, cols]) => cols.every((c) => columns.includes(c))).map(([g]) => g);
  if (groups.flatMap((g) => layout.get(g)).length !== columns.length) {
    const listing = [...layout].map(([g, cols]) => `${g}: ${cols.join(", ")}`).join("; ");
    throw new NotGrantable(
      `Not approved: columns ${columns.toSorted().join(", ")} are not whole column groups of ` +
        `${dataset} version ${m.version} (groups: ${listing}). Tick every column of the groups ` +
        "to grant, or none for every column. Nothing was granted."
    );
  }
  return { columns, groups };
}

function failure(error) {
  if (error instanceof KeyFlowError || error instanceof NotGrantable) return error.message;
  if (error.status === 409) return WITHDRAWN;
  return explain(error, GONE);
}

function defaultExpiry() {
  return new Date(Date.now() + 90 * 86400 * 1000).toISOString().slice(0, 10);
}

async function approve(session, item, form) {
  const data = new FormData(form);
  const expires = `${data.get("expires")}T23:59:59Z`;
  if (Date.parse(expires) <= Date.now()) {
    return show("The expiry date must be in the future.", "problem");
  }
  const { columns, groups } = await columnScope(item.dataset, data.getAll("column"));
  const now = new Date();
  const grant = {
    spec_version: groups ? 2 : 1, // 2 exactly when it names groups (SPEC 3.3)
    dataset: item.dataset,
    publisher: session.keyid,
    grantee: item.requester.keyid,
    request: item.request_id,
    min_version: Number(data.get("min_version")),
    max_version: data.get("max_version") ? Number(data.get("max_version")) : null,
    columns,
    ...(groups ? { groups } : {}),
    not_before: timestamp(now),
    expires,
    created: timestamp(now),
  };
  // The data keys first: an encrypted dataset is not granted without them (ENCRYPTION.md 6).
  const keys = await approvalKeys(session, grant);
  const envelope = await signEnvelope(session.key, session.keyid, PAYLOAD_TYPES.grant, grant);
  const out = await api("POST", "/v1/grants", { body: envelope });
  const approved = `Approved: grant ${short(out.grant_id)} for ${item.dataset} to ${item.requester.name}`;
  if (!keys) return show(`${approved}.`);
  try {
    const n = await postKeyGrant(session, grant, out.grant_id, keys);
    show(`${approved}, with ${n} data key${n === 1 ? "" : "s"} wrapped to their encryption key.`);
  } catch (error) {
    show(`${approved}, but its data keys were not stored (${failure(error)}): approve again to send them.`, "problem");
  }
}

async function requestCard(session, item) {
  const node = document.getElementById("request-template").content.firstElementChild.cloneNode(true);
  node.querySelector(".req-head").textContent = `${item.requester.name} asks for ${item.dataset}`;
  node.querySelector(".req-purpose").textContent = `Purpose: ${item.purpose}`;
  node.querySelector(".req-meta").textContent =
    `${item.requester.affiliation} · ${item.requester.kind} · key ${short(item.requester.keyid)} · ` +
    `sent ${item.created} · request ${short(item.request_id)}`;
  const approveForm = node.querySelector(".approve-form");
  approveForm.elements.expires.value = defaultExpiry();
  const box = node.querySelector(".columns");
  const layout = await datasetLayout(item.dataset);
  for (const [group, columns] of layout) {
    let place = box;
    if (layout.size > 1) { // column groups: a grant names whole groups
      place = document.createElement("fieldset");
      place.append(Object.assign(document.createElement("legend"), { textContent: `Group ${group}` }));
      box.append(place);
    }
    for (const name of columns) {
      const label = document.createElement("label");
      const input = Object.assign(document.createElement("input"), { type: "checkbox", name: "column", value: name });
      label.append(input, ` ${name}`);
      place.append(label);
    }
  }
  const act = (form, action) =>
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await action(form);
      } catch (error) {
        show(failure(error), "problem");
      }
      await refresh();
    });
  act(approveForm, (form) => approve(session, item, form));
  act(node.querySelector(".deny-form"), async (form) => {
    const reason = form.elements.reason.value;
    await api("POST", `/v1/requests/${item.request_id}/deny`, { body: { reason } });
    show(`Denied the request of ${item.requester.name} for ${item.dataset}.`);
  });
  return node;
}

async function revoke(session, g, reason) {
  const statement = {
    spec_version: 1,
    dataset: g.dataset,
    publisher: session.keyid,
    grant: g.grant_id,
    reason,
    created: timestamp(),
  };
  const envelope = await signEnvelope(session.key, session.keyid, PAYLOAD_TYPES.revocation, statement);
  await api("POST", "/v1/revocations", { body: envelope });
  show(`Revoked grant ${short(g.grant_id)} for ${g.dataset}.`);
}

function revokeForm(session, g) {
  const form = document.createElement("form");
  const label = document.createElement("label");
  const input = Object.assign(document.createElement("input"), { type: "text", name: "reason" });
  label.append(`Reason for revoking ${short(g.grant_id)} `, input);
  const button = Object.assign(document.createElement("button"), { type: "submit", textContent: "Revoke" });
  form.append(label, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await revoke(session, g, input.value);
    } catch (error) {
      show(explain(error, GONE), "problem");
    }
    await refresh();
  });
  return form;
}

function ownKeys(session) {
  const p = session.principal;
  return new Set([p.keyid, ...p.keys.map((k) => k.keyid), ...p.rotated_keys.map((k) => k.keyid)]);
}

async function showGrants(session) {
  const keys = ownKeys(session);
  const body = document.querySelector("#grants tbody");
  body.replaceChildren();
  for (const g of (await api("GET", "/v1/grants")).items.filter((x) => keys.has(x.publisher))) {
    const row = body.insertRow();
    cell(row, g.dataset);
    cell(row, short(g.grantee), "digest");
    cell(row, grantVersions(g));
    cell(row, g.columns ? g.columns.join(", ") : "all");
    cell(row, g.expires);
    const status = grantStatus(g);
    cell(row, status, `status-${status.replace(/ /g, "-")}`);
    const action = row.insertCell();
    if (!g.revoked) action.append(revokeForm(session, g));
  }
}

async function showInbox(session) {
  const pending = (await api("GET", "/v1/requests?status=pending")).items;
  const mine = pending.filter((r) => r.requester.keyid !== session.principal.keyid);
  const list = document.getElementById("inbox");
  list.replaceChildren(...(await Promise.all(mine.map((item) => requestCard(session, item)))));
  document.getElementById("inbox-empty").hidden = mine.length > 0;
}

async function fillAuditDatasets(session) {
  const keys = ownKeys(session);
  const select = document.getElementById("audit-dataset");
  const chosen = select.value;
  const all = (await api("GET", "/v1/datasets?limit=1000", { auth: false })).items;
  select.replaceChildren(
    ...all.filter((d) => keys.has(d.publisher)).map((d) => new Option(d.dataset, d.dataset))
  );
  if (chosen) select.value = chosen;
}

async function auditEvents(dataset) {
  const events = [];
  for (let after = 0; ; ) {
    const page = (await api("GET", `/v1/datasets/${dataset}/audit?limit=1000&after=${after}`)).items;
    events.push(...page);
    if (page.length < 1000) return events;
    after = page[page.length - 1].id;
  }
}

function utc(value) {
  return value ? Date.parse(`${value}Z`) : null;
}

async function showAudit(event) {
  event?.preventDefault();
  const form = document.getElementById("audit-form");
  const data = new FormData(form);
  if (!data.get("dataset")) return;
  const principal = data.get("principal").trim().toLowerCase();
  const kind = data.get("kind");
  const from = utc(data.get("from"));
  const to = utc(data.get("to"));
  try {
    const events = (await auditEvents(data.get("dataset"))).filter((e) => {
      const t = Date.parse(e.time);
      return (
        (!principal || (e.principal || "").startsWith(principal)) &&
        (!kind || e.action === kind) &&
        (from === null || t >= from) &&
        (to === null || t <= to)
      );
    });
    const body = document.querySelector("#audit tbody");
    body.replaceChildren();
    for (const e of events) {
      const row = body.insertRow();
      cell(row, e.time, "time");
      cell(row, e.action, `kind-${e.action}`);
      cell(row, short(e.principal), "digest");
      cell(row, e.version ?? "");
      cell(row, short(e.grant_id), "digest");
      cell(row, e.detail);
    }
    document.getElementById("audit-count").textContent = `${events.length} event${events.length === 1 ? "" : "s"}`;
  } catch (error) {
    show(explain(error, GONE), "problem");
  }
}

async function refresh() {
  const session = await getSession();
  if (!session) return show("Sign in with a publisher's key to see its requests and grants.", "problem");
  try {
    await Promise.all([showInbox(session), showGrants(session), fillAuditDatasets(session)]);
  } catch (error) {
    show(explain(error, GONE), "problem");
  }
}

document.getElementById("audit-form").addEventListener("submit", showAudit);
refresh();
