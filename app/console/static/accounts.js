// Accounts (admin accounts only): users, their access keys (a new secret is shown once,
// here, and never again), disable/enable, identity policies attached by name. Every
// call is the admin API under /-/admin/ (docs: README "Accounts and permissions").

import { uriEncode } from "./sigv4.js";
import { action, field, h, replace, say, table, when } from "./ui.js";

const API = "/-/admin";

function userPath(name, ...rest) {
  return [API, "users", uriEncode(name), ...rest.map(uriEncode)].join("/");
}

function secretBox(key) {
  return h("section", { class: "card secret", id: "new-secret", role: "alert" },
    h("h2", {}, "New access key"),
    h("p", {}, "Copy the secret now: it is shown only this once."),
    h("dl", { class: "meta" },
      h("dt", {}, "user"), h("dd", {}, key.user),
      h("dt", {}, "access key"), h("dd", { class: "mono" }, key.access_key),
      h("dt", {}, "secret key"), h("dd", { class: "mono" }, key.secret_key)));
}

export async function render(view, ctx, params) {
  if (!ctx.admin) {
    replace(view, h("h1", {}, "Accounts"), h("p", {}, "Accounts are managed by admin accounts only."));
    return;
  }
  const list = h("div", { id: "users" });
  const detail = h("div", { id: "user-detail" });
  const flash = h("div");
  const name = h("input", { id: "new-user", required: true, spellcheck: "false" });
  const isAdmin = h("input", { type: "checkbox", id: "new-user-admin" });
  const form = h("form", { class: "inline" }, field("New user", name),
    h("div", { class: "field check" }, isAdmin, h("label", { for: "new-user-admin" }, "admin")),
    h("button", { type: "submit" }, "Add user"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const user = await ctx.client.json(`${API}/users`, { method: "POST",
        body: JSON.stringify({ name: name.value.trim(), admin: isAdmin.checked }) });
      say(`User ${user.name} added.`, "ok");
      name.value = "";
      isAdmin.checked = false;
      await loadUsers();
      ctx.go("accounts", { user: user.name });
    } catch (error) {
      say(error.message, "error");
    }
  });

  async function loadUsers() {
    const answer = await ctx.client.json(`${API}/users`);
    replace(list, table(["User", "Admin", "State", "Keys", "Policies", "Source"],
      answer.users.map((u) => h("tr", { "data-user": u.name },
        h("td", {}, h("a", { href: `#/accounts?${new URLSearchParams({ user: u.name })}` }, u.name)),
        h("td", {}, u.admin ? "yes" : "no"), h("td", {}, u.disabled ? "disabled" : "enabled"),
        h("td", { class: "num" }, u.keys.length), h("td", {}, u.policies.join(", ") || "–"),
        h("td", {}, u.source)))));
  }

  async function loadUser(userName) {
    const user = await ctx.client.json(userPath(userName));
    const { policies } = await ctx.client.json(userPath(userName, "policies"));
    const readOnly = user.source === "config";
    const policyName = h("input", { id: "policy-name", spellcheck: "false" });
    const policyBody = h("textarea", { id: "policy-body", rows: 8, spellcheck: "false" });
    const reload = async () => {
      await Promise.all([loadUsers(), loadUser(userName)]);
    };
    replace(detail, h("section", { class: "card", id: "user" },
      h("h2", {}, `User ${user.name}`),
      h("dl", { class: "meta" },
        h("dt", {}, "canonical id"), h("dd", { class: "mono break" }, user.canonical_id),
        h("dt", {}, "admin"), h("dd", {}, user.admin ? "yes" : "no"),
        h("dt", {}, "state"), h("dd", {}, user.disabled ? "disabled" : "enabled"),
        h("dt", {}, "source"), h("dd", {}, readOnly ? "config file (read-only here)" : "runtime"),
        h("dt", {}, "created"), h("dd", {}, when(user.created))),
      readOnly ? null : h("div", { class: "buttons" },
        action(user.disabled ? "Enable" : "Disable", async () => {
          await ctx.client.json(userPath(user.name, user.disabled ? "enable" : "disable"), { method: "POST" });
          say(`User ${user.name} ${user.disabled ? "enabled" : "disabled"}.`, "ok");
          await reload();
        }),
        action("Create access key", async () => {
          const key = await ctx.client.json(userPath(user.name, "keys"), { method: "POST" });
          replace(flash, secretBox(key));
          await reload();
        }),
        action("Delete user", async () => {
          if (!confirm(`Delete the user ${user.name} and revoke its keys?`)) return;
          await ctx.client.json(userPath(user.name), { method: "DELETE" });
          say(`User ${user.name} deleted.`, "ok");
          replace(detail);
          await loadUsers();
        })),
      h("h3", {}, "Access keys"),
      user.keys.length ? table(["Access key", "Status", "Created", ""], user.keys.map((k) => h("tr", {},
        h("td", { class: "mono" }, k.access_key), h("td", {}, k.status), h("td", {}, when(k.created)),
        h("td", {}, readOnly ? null : action("Revoke", async () => {
          if (!confirm(`Revoke ${k.access_key}? Requests signed with it fail at once.`)) return;
          await ctx.client.json(`${API}/keys/${uriEncode(k.access_key)}`, { method: "DELETE" });
          say(`Key ${k.access_key} revoked.`, "ok");
          await reload();
        }, { "aria-label": `Revoke ${k.access_key}` }))))) : h("p", {}, "No keys."),
      h("h3", {}, "Policies"),
      Object.keys(policies).length ? table(["Policy", "Document", ""], Object.entries(policies).map(([pn, doc]) =>
        h("tr", {}, h("td", {}, pn), h("td", {}, h("pre", { class: "doc" }, JSON.stringify(doc, null, 2))),
          h("td", {}, action("Detach", async () => {
            await ctx.client.json(userPath(user.name, "policies", pn), { method: "DELETE" });
            say(`Policy ${pn} detached.`, "ok");
            await reload();
          }, { "aria-label": `Detach ${pn}` }))))) : h("p", {}, "No policies attached."),
      h("h4", {}, "Attach a policy"),
      field("Policy name", policyName),
      field("IAM policy (JSON)", policyBody),
      action("Attach", async () => {
        try {
          JSON.parse(policyBody.value);
        } catch (error) {
          say(`Not attached: the policy is not valid JSON: ${error.message}`, "error");
          return;
        }
        await ctx.client.json(userPath(user.name, "policies", policyName.value.trim()),
                              { method: "PUT", body: policyBody.value });
        say(`Policy ${policyName.value.trim()} attached.`, "ok");
        await reload();
      })));
  }

  replace(view, h("h1", {}, "Accounts"), form, flash, list, detail);
  await loadUsers();
  if (params.get("user")) await loadUser(params.get("user"));
}
