// Buckets: the list with counts and sizes, create, delete; a bucket's settings
// (versioning, policy, CORS, lifecycle) edited as S3 documents, checked here for
// syntax, then by the server, whose error text is shown as S3 returns it.

import { objectPath } from "./sigv4.js";
import { parseXml, text } from "./s3.js";
import { action, bytes, field, h, replace, say, table, when } from "./ui.js";

export async function renderList(view, ctx) {
  const name = h("input", { id: "new-bucket", required: true, spellcheck: "false",
                            pattern: "[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]",
                            title: "3-63 lower-case letters, digits, dots and hyphens" });
  const form = h("form", { class: "inline", id: "create-bucket" },
    field("New bucket", name), h("button", { type: "submit" }, "Create bucket"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await ctx.client.send("PUT", objectPath(name.value.trim()));
      say(`Bucket ${name.value.trim()} created.`, "ok");
      name.value = "";
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  });
  const list = h("div", { id: "bucket-list" });
  replace(view, h("h1", {}, "Buckets"), form, list);

  async function load() {
    const answer = await ctx.client.json("/-/console/api/buckets");
    const rows = answer.buckets.map((b) => h("tr", { "data-bucket": b.name },
      h("td", {}, h("a", { href: `#/objects?${new URLSearchParams({ bucket: b.name })}` }, b.name)),
      h("td", { class: "num" }, b.objects ?? "–"),
      h("td", { class: "num" }, bytes(b.bytes)),
      h("td", { class: "hide-narrow" }, b.versioning),
      h("td", { class: "hide-narrow" }, when(b.created)),
      h("td", { class: "actions" },
        h("a", { class: "button", href: `#/settings?${new URLSearchParams({ bucket: b.name })}` },
          "Settings"),
        action("Delete", async () => {
          if (!confirm(`Delete the bucket ${b.name}? It must be empty.`)) return;
          await ctx.client.send("DELETE", objectPath(b.name));
          say(`Bucket ${b.name} deleted.`, "ok");
          await load();
        }, { "aria-label": `Delete bucket ${b.name}` }))));
    replace(list,
      rows.length ? table(["Name", "Objects", "Size", ["Versioning", "hide-narrow"], ["Created", "hide-narrow"], ""], rows)
                  : h("p", {}, "No buckets yet."),
      answer.counted ? null : h("p", { class: "hint" },
        "Object counts need the server's metrics (metrics.enabled)."));
  }
  await load();
}

// One S3 sub-resource edited as text: GET it, PUT it (syntax checked first), DELETE it.
function editor(ctx, bucket, { title, param, kind, example, empty }) {
  const area = h("textarea", { rows: 12, spellcheck: "false", id: `edit-${param}` });
  const note = h("p", { class: "hint" });
  const path = objectPath(bucket);
  async function load() {
    try {
      const response = await ctx.client.send("GET", path, { params: [[param, ""]] });
      area.value = kind === "json" ? JSON.stringify(await response.json(), null, 2) : await response.text();
      note.textContent = "";
    } catch (error) {
      if (error.code !== empty) throw error;
      area.value = "";
      note.textContent = `None set. For example:\n${example}`;
    }
  }
  function check() {
    if (kind === "json") JSON.parse(area.value);
    else parseXml(area.value);
  }
  const section = h("section", { class: "card" }, h("h2", {}, title),
    field(`${title} document`, area), note,
    h("div", { class: "buttons" },
      action("Save", async () => {
        try {
          check();
        } catch (error) {
          say(`${title}: not saved, the document is not valid ${kind.toUpperCase()}: ${error.message}`, "error");
          return;
        }
        await ctx.client.send("PUT", path, { params: [[param, ""]], body: area.value });
        say(`${title} saved.`, "ok");
      }),
      action("Remove", async () => {
        if (!confirm(`Remove the ${title.toLowerCase()} of ${bucket}?`)) return;
        await ctx.client.send("DELETE", path, { params: [[param, ""]] });
        say(`${title} removed.`, "ok");
        await load();
      }),
      action("Reload", load)));
  return { section, load };
}

const POLICY_EXAMPLE = `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
 "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::BUCKET/*"}]}`;
const CORS_EXAMPLE = `<CORSConfiguration><CORSRule><AllowedOrigin>https://example.com</AllowedOrigin>
<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`;
const LIFECYCLE_EXAMPLE = `<LifecycleConfiguration><Rule><ID>expire-tmp</ID><Status>Enabled</Status>
<Filter><Prefix>tmp/</Prefix></Filter><Expiration><Days>7</Days></Expiration></Rule></LifecycleConfiguration>`;

export async function renderSettings(view, ctx, params) {
  const bucket = params.get("bucket");
  const path = objectPath(bucket);
  const state = h("strong", { id: "versioning-state" });
  async function loadVersioning() {
    const doc = await ctx.client.xml("GET", path, { params: [["versioning", ""]] });
    state.textContent = text(doc, "Status") || "Unversioned";
  }
  async function setVersioning(status) {
    const body = `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
      `<Status>${status}</Status></VersioningConfiguration>`;
    await ctx.client.send("PUT", path, { params: [["versioning", ""]], body });
    say(`Versioning ${status.toLowerCase()}.`, "ok");
    await loadVersioning();
  }
  const editors = [
    editor(ctx, bucket, { title: "Bucket policy", param: "policy", kind: "json",
                          example: POLICY_EXAMPLE.replace("BUCKET", bucket), empty: "NoSuchBucketPolicy" }),
    editor(ctx, bucket, { title: "CORS", param: "cors", kind: "xml", example: CORS_EXAMPLE,
                          empty: "NoSuchCORSConfiguration" }),
    editor(ctx, bucket, { title: "Lifecycle", param: "lifecycle", kind: "xml", example: LIFECYCLE_EXAMPLE,
                          empty: "NoSuchLifecycleConfiguration" }),
  ];
  replace(view,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/buckets" }, "Buckets"), " / ",
      h("a", { href: `#/objects?${new URLSearchParams({ bucket })}` }, bucket), " / settings"),
    h("h1", {}, `Settings of ${bucket}`),
    h("section", { class: "card" }, h("h2", {}, "Versioning"),
      h("p", {}, "Versioning is ", state, "."),
      h("div", { class: "buttons" },
        action("Enable versioning", () => setVersioning("Enabled")),
        action("Suspend versioning", () => setVersioning("Suspended")))),
    editors.map((e) => e.section));
  await loadVersioning();
  for (const e of editors) await e.load();
}
