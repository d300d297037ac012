// AWS Signature Version 4 in the browser (WebCrypto HMAC-SHA256 and SHA-256), for S3
// path-style requests to the origin the page came from. The secret key is only ever
// an HMAC key: it is never sent, stored in a cookie or put in a URL.
//
// Browsers offer WebCrypto (crypto.subtle) to secure contexts only: HTTPS pages and
// loopback ones. A console served over plain HTTP on another address (a LAN, as any
// SDK may sign over HTTP) signs with the small SHA-256 below instead: same results.

const encoder = new TextEncoder();
const subtle = globalThis.isSecureContext ? globalThis.crypto?.subtle : undefined;

// FIPS 180-4 SHA-256 of bytes (Uint8Array) -> ArrayBuffer (only where subtle is absent).
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function sha256Plain(data) {
  const length = data.length;
  const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length << 3) >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i += 1) w[i] = view.getUint32(block + 4 * i);
    for (let i = 16; i < 64; i += 1) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i += 1) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [hh, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    [a, b, c, d, e, f, g, hh].forEach((v, i) => { h[i] = (h[i] + v) >>> 0; });
  }
  const out = new DataView(new ArrayBuffer(32));
  h.forEach((v, i) => out.setUint32(4 * i, v));
  return out.buffer;
}

// RFC 2104 HMAC over sha256Plain.
function hmacPlain(key, message) {
  let block = key.length > 64 ? new Uint8Array(sha256Plain(key)) : key;
  const padded = new Uint8Array(64);
  padded.set(block);
  block = padded;
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i += 1) {
    inner[i] = block[i] ^ 0x36;
    outer[i] = block[i] ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(new Uint8Array(sha256Plain(inner)), 64);
  return sha256Plain(outer);
}
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
  return subtle ? subtle.digest("SHA-256", bytes) : sha256Plain(bytes);
}

export async function sha256Hex(data) {
  return hex(await sha256(data));
}

async function hmac(key, text) {
  const raw = typeof key === "string" ? encoder.encode(key) : new Uint8Array(key);
  if (!subtle) return hmacPlain(raw, encoder.encode(text));
  const imported = await subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return subtle.sign("HMAC", imported, encoder.encode(text));
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
