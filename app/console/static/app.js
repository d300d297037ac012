// The console: sign-in, hash routing, pages.
//
// Why the secret key lives in this page's memory only: requests are signed here, in the
// tab (SigV4), so the server holds no session (any node of a cluster serves any request
// alike, nothing to replicate or expire) and no cookie exists for another site to ride
// (a forged request has no signature: no CSRF). Not in sessionStorage or localStorage:
// the console shares its origin with the objects the server serves, and an HTML object
// opened in this tab could read those; a page's memory ends with the page. So a reload
// asks to sign in again; Sign out forgets the key (and the session's upload notes).

import { Client } from "./s3.js";
import { fail, say } from "./ui.js";
import * as buckets from "./buckets.js";
import * as objects from "./objects.js";
import * as cluster from "./cluster.js";
import * as accounts from "./accounts.js";

const PAGES = {
  buckets: buckets.renderList,
  settings: buckets.renderSettings,
  objects: objects.renderList,
  object: objects.renderObject,
  cluster: cluster.render,
  accounts: accounts.render,
};

const context = { client: null, admin: false, auth: true, region: "us-east-1", name: "" };
let navigation = null; // the AbortController of the page shown

async function info() {
  const response = await fetch("api/info", { cache: "no-store", credentials: "omit" });
  if (!response.ok) throw new Error(`The server did not answer (${response.status}).`);
  return response.json();
}

// Who the key belongs to, and whether it is an admin (for the Accounts page).
async function identify(client) {
  return client.json("/-/admin/whoami");
}

async function signIn(credentials) {
  const server = await info();
  const client = new Client(credentials, server.region);
  await client.json("/-/console/api/buckets"); // checks the signature: 403 for a wrong key or secret
  const who = server.auth ? await identify(client) : { name: "(auth off)", admin: true };
  Object.assign(context, { client, admin: who.admin, auth: server.auth, region: server.region,
                           name: who.name || credentials.accessKey });
  document.getElementById("whoami").textContent = context.name;
  document.getElementById("nav-accounts").hidden = !context.admin;
  document.getElementById("nav-cluster").hidden = !context.admin; // /-/cluster is admin-only
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("sign-in").hidden = true;
}

function signOut() {
  sessionStorage.clear(); // resumable uploads' ids (no secrets)
  navigation?.abort();
  Object.assign(context, { client: null, admin: false, name: "" });
  document.getElementById("view").replaceChildren();
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("whoami").textContent = "";
  document.getElementById("secret-key").value = "";
  document.getElementById("sign-in").hidden = false;
  say("Signed out.");
  document.getElementById("access-key").focus();
}

export function go(page, params = {}) {
  const query = new URLSearchParams(params).toString();
  location.hash = `#/${page}${query ? "?" + query : ""}`;
}

async function route() {
  if (!context.client) return;
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const page = PAGES[path] ? path : "buckets";
  navigation?.abort();
  navigation = new AbortController();
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.dataset.page === page || (link.dataset.page === "buckets" &&
      ["settings", "objects", "object"].includes(page));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = document.getElementById("view");
  view.replaceChildren();
  try {
    await PAGES[page](view, { ...context, signal: navigation.signal, go },
                      new URLSearchParams(query || ""));
  } catch (error) {
    fail(error);
  }
}

async function start() {
  const form = document.getElementById("sign-in");
  document.getElementById("sign-out").addEventListener("click", signOut);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const credentials = {
      accessKey: document.getElementById("access-key").value.trim(),
      secretKey: document.getElementById("secret-key").value,
    };
    const button = document.getElementById("sign-in-button");
    button.disabled = true;
    say("Signing in…");
    try {
      await signIn(credentials);
      document.getElementById("secret-key").value = "";
      say(`Signed in as ${context.name}.`, "ok");
      await route();
      document.getElementById("main").focus();
    } catch (error) {
      fail(error);
    } finally {
      button.disabled = false;
    }
  });
  window.addEventListener("hashchange", async () => {
    await route();
    document.getElementById("main").focus(); // keyboard and screen reader users start at the page
  });
  form.hidden = false;
  document.getElementById("access-key").focus();
}

start();
