// AWS Signature Version 4 in the browser (WebCrypto HMAC-SHA256 and SHA-256), for S3
// path-style requests to the origin the page came from. The secret key only ever
// enters crypto.subtle: it is never sent, stored in a cookie or put in a URL.

const encoder = new TextEncoder();
export const UNSIGNED = "UNSIGNED-PAYLOAD";
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function base64(buffer) {
  let text = "";
  for (const b of new Uint8Array(buffer)) text += String.fromCharCode(b);
  return btoa(text);
}

export async function sha256(data) {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return crypto.subtle.digest("SHA-256", bytes);
}

export async function sha256Hex(data) {
  return hex(await sha256(data));
}

async function hmac(key, text) {
  const raw = typeof key === "string" ? encoder.encode(key) : key;
  const imported = await crypto.subtle.importKey(
    "raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return crypto.subtle.sign("HMAC", imported, encoder.encode(text));
}

// RFC 3986 percent-encoding as AWS specifies it (unreserved characters kept).
export function uriEncode(text) {
  return encodeURIComponent(text).replace(/[!'()*]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

// "/bucket/key/with/slashes": each segment encoded, the slashes kept.
export function objectPath(bucket, key) {
  if (!bucket) return "/";
  const path = "/" + uriEncode(bucket);
  if (key === undefined || key === null) return path;
  return path + "/" + key.split("/").map(uriEncode).join("/");
}

// [[name, value], ...] -> the canonical (and sent) query string: encoded, sorted.
export function queryString(params) {
  return params
    .map(([name, value]) => [uriEncode(name), uriEncode(value ?? "")])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
}

function amzDate(now) {
  return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

async function signingKey(secret, date, region) {
  const kDate = await hmac("AWS4" + secret, date);
  const kRegion = await hmac(kDate, region);
  const kService = await hmac(kRegion, "s3");
  return hmac(kService, "aws4_request");
}

// The headers that sign one request. `headers`: extra headers to send and sign
// (every x-amz-* one must be signed); host is the browser's own (location.host), the
// Host header fetch() sends, which the server reads as it arrives.
export async function signHeaders({ method, path, query = "", headers = {}, payloadHash = UNSIGNED,
                                     credentials, region, now = new Date() }) {
  const date = amzDate(now);
  const all = {};
  for (const [name, value] of Object.entries(headers)) all[name.toLowerCase()] = String(value);
  all["host"] = location.host;
  all["x-amz-date"] = date;
  all["x-amz-content-sha256"] = payloadHash;
  const names = Object.keys(all).sort();
  const canonicalHeaders = names.map((n) => `${n}:${all[n].trim().replace(/\s+/g, " ")}\n`).join("");
  const signedNames = names.join(";");
  const canonical = [method, path, query, canonicalHeaders, signedNames, payloadHash].join("\n");
  const scope = `${date.slice(0, 8)}/${region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(canonical)].join("\n");
  const key = await signingKey(credentials.secretKey, date.slice(0, 8), region);
  const signature = hex(await hmac(key, toSign));
  delete all["host"]; // the browser sets it itself
  all["authorization"] =
    `AWS4-HMAC-SHA256 Credential=${credentials.accessKey}/${scope}, ` +
    `SignedHeaders=${signedNames}, Signature=${signature}`;
  return all;
}

// A presigned URL (query-string SigV4) for GET of an object, valid `expires` seconds.
export async function presign({ path, params = [], expires, credentials, region, now = new Date() }) {
  const date = amzDate(now);
  const scope = `${date.slice(0, 8)}/${region}/s3/aws4_request`;
  const all = [
    ...params,
    ["X-Amz-Algorithm", "AWS4-HMAC-SHA256"],
    ["X-Amz-Credential", `${credentials.accessKey}/${scope}`],
    ["X-Amz-Date", date],
    ["X-Amz-Expires", String(expires)],
    ["X-Amz-SignedHeaders", "host"],
  ];
  const query = queryString(all);
  const canonical = ["GET", path, query, `host:${location.host}\n`, "host", UNSIGNED].join("\n");
  const toSign = ["AWS4-HMAC-SHA256", date, scope, await sha256Hex(canonical)].join("\n");
  const key = await signingKey(credentials.secretKey, date.slice(0, 8), region);
  const signature = hex(await hmac(key, toSign));
  return `${location.origin}${path}?${query}&X-Amz-Signature=${signature}`;
}
