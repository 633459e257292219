// A researcher's own requests and grants.
import { api, cell, explain, getSession, grantStatus, grantVersions, short, show } from "./ostraca.js";

async function load() {
  if (!(await getSession())) return show("Sign in to see your requests and grants.", "problem");
  try {
    const [requests, grants] = await Promise.all([api("GET", "/v1/requests"), api("GET", "/v1/grants")]);
    const session = await getSession();
    const mine = requests.items.filter((r) => r.requester.keyid === session.principal.keyid);
    const rows = document.querySelector("#my-requests tbody");
    for (const r of mine) {
      const row = rows.insertRow();
      cell(row, r.dataset);
      cell(row, r.purpose);
      cell(row, r.status, `status-${r.status}`);
      cell(row, r.created);
      cell(row, r.reason || "");
    }
    const grantRows = document.querySelector("#my-grants tbody");
    for (const g of grants.items.filter((x) => x.grantee === session.principal.keyid || x.grantee === session.keyid)) {
      const row = grantRows.insertRow();
      cell(row, g.dataset);
      cell(row, grantVersions(g));
      cell(row, g.columns ? g.columns.join(", ") : "all");
      cell(row, g.expires);
      cell(row, grantStatus(g), `status-${grantStatus(g).replace(/ /g, "-")}`);
      cell(row, short(g.grant_id), "digest");
    }
  } catch (error) {
    show(explain(error), "problem");
  }
}

load();
