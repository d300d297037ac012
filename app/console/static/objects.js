// Objects: browse a bucket by prefix ("/" folders), a page of at most PAGE keys at a
// time (continuation tokens: a bucket of any size is never listed whole), upload by
// file input or drag and drop, download, delete many; one object's metadata, tags,
// versions and share link.

import { objectPath, uriEncode } from "./sigv4.js";
import { all, text } from "./s3.js";
import { action, bytes, field, h, replace, say, table, when } from "./ui.js";
import { Upload } from "./upload.js";

const PAGE = 1000;

function link(page, params) {
  return `#/${page}?${new URLSearchParams(params)}`;
}

function crumbs(bucket, prefix, last) {
  const parts = prefix.split("/").filter(Boolean);
  const trail = [h("a", { href: "#/buckets" }, "Buckets"), " / ",
                 h("a", { href: link("objects", { bucket }) }, bucket)];
  let at = "";
  for (const part of parts) {
    at += part + "/";
    trail.push(" / ", h("a", { href: link("objects", { bucket, prefix: at }) }, part));
  }
  if (last) trail.push(" / ", last);
  return h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, trail);
}

// A real download: a presigned GET (5 minutes) asking for an attachment, followed
// by the browser itself, so large objects stream to disk instead of into memory.
async function download(ctx, bucket, key, versionId) {
  const name = key.split("/").pop() || "download";
  const params = [["response-content-disposition", `attachment; filename*=UTF-8''${uriEncode(name)}`]];
  if (versionId) params.push(["versionId", versionId]);
  const url = await ctx.client.presign(bucket, key, 300, params);
  const anchor = h("a", { href: url, download: name, hidden: true });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  say(`Downloading ${name}…`);
}

function uploadRow(upload, retry) {
  const bar = h("progress", { max: upload.file.size || 1, value: 0, "aria-label": `Upload of ${upload.key}` });
  const label = h("span", { class: "upload-state" });
  const buttons = h("span", { class: "buttons" });
  const row = h("li", { class: "upload", "data-key": upload.key }, h("span", { class: "upload-name" }, upload.key),
                bar, label, buttons);
  const show = () => {
    bar.value = upload.loaded;
    const pct = upload.file.size ? Math.floor((100 * upload.loaded) / upload.file.size) : 100;
    const states = { queued: "waiting", uploading: `${pct}% of ${bytes(upload.file.size)}`, done: "done",
                     cancelled: "cancelled", failed: `failed: ${upload.error?.message}` };
    label.textContent = states[upload.state];
    row.dataset.state = upload.state;
    const wanted = upload.state === "failed" ? "resume" : upload.state === "uploading" ? "cancel" : "";
    if (buttons.dataset.kind !== wanted) {
      buttons.dataset.kind = wanted;
      replace(buttons,
        wanted === "resume" ? action("Resume", () => retry(upload)) : null,
        wanted === "cancel" || wanted === "resume" ? action("Cancel", () => upload.cancel()) : null);
    }
  };
  return { row, show };
}

export async function renderList(view, ctx, params) {
  const bucket = params.get("bucket");
  const prefix = params.get("prefix") || "";
  const tokens = [null]; // the token of each page seen, for going back
  let page = 0;
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const uploads = h("ul", { class: "uploads", id: "uploads", "aria-label": "Uploads" });
  const checkAll = h("input", { type: "checkbox", "aria-label": "Select every object on this page" });
  const fileInput = h("input", { type: "file", id: "file-input", multiple: true, class: "visually-hidden" });
  const drop = h("div", { class: "drop", id: "drop-zone" },
    h("label", { for: "file-input", class: "button" }, "Upload files"), fileInput,
    h("span", { class: "hint" }, " or drop files here"));

  async function load() {
    const list = [["list-type", "2"], ["delimiter", "/"], ["max-keys", String(PAGE)], ["prefix", prefix]];
    if (tokens[page]) list.push(["continuation-token", tokens[page]]);
    const doc = await ctx.client.xml("GET", objectPath(bucket), { params: list });
    const rows = [];
    for (const p of all(doc, "CommonPrefixes")) {
      const sub = text(p, "Prefix");
      rows.push(h("tr", { class: "folder" }, h("td", {}),
        h("td", {}, h("a", { href: link("objects", { bucket, prefix: sub }) }, sub.slice(prefix.length))),
        h("td", {}, "folder"), h("td", { class: "hide-narrow" }), h("td", {})));
    }
    for (const c of all(doc, "Contents")) {
      const key = text(c, "Key");
      rows.push(h("tr", { "data-key": key },
        h("td", {}, h("input", { type: "checkbox", class: "pick", value: key, "aria-label": `Select ${key}` })),
        h("td", {}, h("a", { href: link("object", { bucket, key }) }, key.slice(prefix.length))),
        h("td", { class: "num" }, bytes(Number(text(c, "Size")))),
        h("td", { class: "hide-narrow" }, when(text(c, "LastModified"))),
        h("td", { class: "actions" }, action("Download", () => download(ctx, bucket, key),
                                              { "aria-label": `Download ${key}` }))));
    }
    replace(body, rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "Nothing here.")));
    checkAll.checked = false;
    const next = text(doc, "NextContinuationToken");
    tokens[page + 1] = text(doc, "IsTruncated") === "true" ? next : undefined;
    replace(pager,
      page > 0 ? action("Previous page", async () => { page -= 1; await load(); }) : null,
      h("span", {}, `Page ${page + 1}`),
      tokens[page + 1] ? action("Next page", async () => { page += 1; await load(); }) : null);
  }

  function picked() {
    return Array.from(body.querySelectorAll("input.pick:checked"), (box) => box.value);
  }

  async function deleteMany() {
    const keys = picked();
    if (!keys.length) return say("Select objects to delete first.");
    if (!confirm(`Delete ${keys.length} object(s)?`)) return;
    const escape = (k) => k.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const xml = `<Delete><Quiet>true</Quiet>${keys.map((k) => `<Object><Key>${escape(k)}</Key></Object>`).join("")}</Delete>`;
    const doc = await ctx.client.xml("POST", objectPath(bucket), { params: [["delete", ""]], body: xml });
    const errors = all(doc, "Error").map((e) => `${text(e, "Key")}: ${text(e, "Code")}`);
    say(errors.length ? `Not deleted: ${errors.join(", ")}` : `Deleted ${keys.length} object(s).`,
        errors.length ? "error" : "ok");
    await load();
  }

  const running = new Set();
  async function start(upload) {
    running.add(upload);
    await upload.run();
    running.delete(upload);
    if (upload.state === "done") say(`Uploaded ${upload.key}.`, "ok");
    if (!running.size) await load();
  }
  function queue(files) {
    const added = [];
    for (const file of files) {
      let show = () => {};
      const upload = new Upload(ctx.client, bucket, prefix + file.name, file, (u) => show(u));
      const ui = uploadRow(upload, start);
      show = ui.show;
      ui.show();
      uploads.append(ui.row);
      added.push(upload);
    }
    return added;
  }
  async function sendAll(files) {
    for (const upload of queue(files)) await start(upload);
  }

  fileInput.addEventListener("change", () => {
    const files = Array.from(fileInput.files);
    fileInput.value = "";
    sendAll(files);
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    // Files only: a dropped folder is an entry too, but not something to PUT.
    const files = Array.from(event.dataTransfer.items)
      .filter((item) => item.kind === "file" && (item.webkitGetAsEntry?.()?.isFile ?? true))
      .map((item) => item.getAsFile());
    sendAll(files);
  });
  checkAll.addEventListener("change", () => {
    for (const box of body.querySelectorAll("input.pick")) box.checked = checkAll.checked;
  });

  replace(view, crumbs(bucket, prefix), h("h1", {}, prefix ? `${bucket}/${prefix}` : bucket),
    h("div", { class: "toolbar" }, drop,
      action("Delete selected", deleteMany, { id: "delete-selected" }),
      action("Refresh", load),
      h("a", { class: "button", href: link("settings", { bucket }) }, "Bucket settings")),
    uploads,
    h("div", { class: "table-wrap" }, h("table", { id: "objects" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, checkAll), h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col" }, "Size"), h("th", { scope: "col", class: "hide-narrow" }, "Last modified"),
        h("th", { scope: "col" }, ""))), body)),
    pager);
  await load();
}

function tagsXml(lines) {
  const escape = (v) => v.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const tags = lines.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
    const at = line.indexOf("=");
    const [k, v] = at < 0 ? [line, ""] : [line.slice(0, at), line.slice(at + 1)];
    return `<Tag><Key>${escape(k.trim())}</Key><Value>${escape(v.trim())}</Value></Tag>`;
  });
  return `<Tagging><TagSet>${tags.join("")}</TagSet></Tagging>`;
}

export async function renderObject(view, ctx, params) {
  const bucket = params.get("bucket");
  const key = params.get("key");
  const path = objectPath(bucket, key);
  const folder = key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : "";
  const meta = h("dl", { class: "meta", id: "metadata" });
  const tags = h("textarea", { rows: 5, spellcheck: "false", id: "tags" });
  const versions = h("div", { id: "versions" });
  const share = h("input", { readonly: true, id: "share-url", class: "wide" });
  const expiry = h("select", { id: "share-expiry" },
    [["900", "15 minutes"], ["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"]]
      .map(([v, t]) => h("option", { value: v }, t)));

  async function loadMeta() {
    const response = await ctx.client.send("HEAD", path);
    const rows = [];
    for (const [name, value] of response.headers) {
      if (["x-amz-request-id", "date", "server", "connection"].includes(name)) continue;
      rows.push(h("dt", {}, name), h("dd", {}, value));
    }
    replace(meta, rows);
  }
  async function loadTags() {
    const doc = await ctx.client.xml("GET", path, { params: [["tagging", ""]] });
    tags.value = all(doc, "Tag").map((t) => `${text(t, "Key")}=${text(t, "Value")}`).join("\n");
  }
  async function loadVersions() {
    const found = [];
    let keyMarker = null;
    let versionMarker = null;
    for (let round = 0; round < 20; round += 1) {
      const list = [["versions", ""], ["prefix", key], ["max-keys", String(PAGE)]];
      if (keyMarker !== null) list.push(["key-marker", keyMarker], ["version-id-marker", versionMarker]);
      const doc = await ctx.client.xml("GET", objectPath(bucket), { params: list });
      // In the server's order: newest first (versions and delete markers interleaved).
      const entries = Array.from(doc.documentElement.children)
        .filter((v) => ["Version", "DeleteMarker"].includes(v.tagName) && text(v, "Key") === key);
      found.push(...entries);
      if (text(doc, "IsTruncated") !== "true" || text(doc, "NextKeyMarker") !== key) break;
      keyMarker = text(doc, "NextKeyMarker");
      versionMarker = text(doc, "NextVersionIdMarker");
    }
    const rows = found.map((v) => {
      const id = text(v, "VersionId");
      const marker = v.tagName === "DeleteMarker";
      const latest = text(v, "IsLatest") === "true";
      return h("tr", {},
        h("td", { class: "mono" }, id), h("td", {}, marker ? "delete marker" : bytes(Number(text(v, "Size")))),
        h("td", { class: "hide-narrow" }, when(text(v, "LastModified"))), h("td", {}, latest ? "latest" : ""),
        h("td", { class: "actions" },
          marker ? null : action("Download", () => download(ctx, bucket, key, id)),
          marker || latest || id === "null" ? null : action("Restore", async () => {
            const source = `${objectPath(bucket, key)}?versionId=${uriEncode(id)}`;
            await ctx.client.send("PUT", path, { headers: { "x-amz-copy-source": source } });
            say(`Version ${id} restored as the latest.`, "ok");
            await Promise.all([loadVersions(), loadMeta().catch(() => {})]);
          }),
          action("Delete", async () => {
            if (!confirm(`Delete version ${id} for good?`)) return;
            await ctx.client.send("DELETE", path, { params: [["versionId", id]] });
            say(`Version ${id} deleted.`, "ok");
            await loadVersions();
          })));
    });
    replace(versions, rows.length > 1 || (rows.length === 1 && text(found[0], "VersionId") !== "null")
      ? table(["Version", "Size", ["Modified", "hide-narrow"], "", ""], rows)
      : h("p", { class: "hint" }, "One version only (enable versioning in the bucket settings to keep old ones)."));
  }

  replace(view, crumbs(bucket, folder, key.slice(folder.length)), h("h1", { class: "break" }, key),
    h("div", { class: "buttons" },
      action("Download", () => download(ctx, bucket, key)),
      action("Delete object", async () => {
        if (!confirm(`Delete ${key}?`)) return;
        await ctx.client.send("DELETE", path);
        say(`Deleted ${key}.`, "ok");
        ctx.go("objects", { bucket, prefix: folder });
      })),
    h("section", { class: "card" }, h("h2", {}, "Metadata"), meta),
    h("section", { class: "card" }, h("h2", {}, "Share link"),
      h("p", { class: "hint" }, "A presigned URL, signed here: anyone holding it may download this object until it expires."),
      h("div", { class: "inline" }, field("Valid for", expiry),
        action("Create link", async () => {
          share.value = await ctx.client.presign(bucket, key, Number(expiry.value));
          share.select();
        })),
      field("Link", share)),
    h("section", { class: "card" }, h("h2", {}, "Tags"),
      field("Tags, one key=value a line", tags),
      action("Save tags", async () => {
        await ctx.client.send("PUT", path, { params: [["tagging", ""]], body: tagsXml(tags.value) });
        say("Tags saved.", "ok");
      })),
    h("section", { class: "card" }, h("h2", {}, "Versions"), versions));
  await loadMeta();
  await Promise.all([loadTags(), loadVersions()]);
}
