// Signed calls to this server: the S3 API (path-style), the management API under /-/
// and the console's JSON endpoints. Errors become S3Error with S3's own code and text.

import { base64, objectPath, presign, queryString, sha256, signHeaders, UNSIGNED } from "./sigv4.js";

export class S3Error extends Error {
  constructor(status, code, message) {
    super(message ? `${code}: ${message}` : code);
    this.status = status;
    this.code = code;
    this.text = message;
  }
}

async function errorOf(response) {
  const text = await response.text();
  if (text.startsWith("<")) {
    const doc = new DOMParser().parseFromString(text, "application/xml");
    const code = doc.querySelector("Error > Code")?.textContent;
    if (code) return new S3Error(response.status, code, doc.querySelector("Error > Message")?.textContent || "");
  }
  return new S3Error(response.status, `HTTP ${response.status}`, response.statusText || text.slice(0, 200));
}

export function parseXml(text) {
  const doc = new DOMParser().parseFromString(text, "application/xml");
  if (doc.querySelector("parsererror")) throw new S3Error(0, "MalformedXML", "this is not well-formed XML");
  return doc;
}

// Children of `node` named `name` (no namespace games: S3's one default namespace).
export function all(node, name) {
  return Array.from(node.getElementsByTagName(name));
}

export function text(node, name) {
  return node.getElementsByTagName(name)[0]?.textContent ?? null;
}

export class Client {
  constructor(credentials, region) {
    this.credentials = credentials;
    this.region = region;
    this.skew = 0; // ms to add to this machine's clock (learnt from RequestTimeTooSkewed)
  }

  now() {
    return new Date(Date.now() + this.skew);
  }

  async headers(method, path, query, headers, payloadHash) {
    return signHeaders({ method, path, query, headers, payloadHash, credentials: this.credentials,
                         region: this.region, now: this.now() });
  }

  // One signed request; a text or bytes body is hashed and checksummed, so calls S3
  // insists carry an integrity header (DeleteObjects, PutBucketCors, ...) have one.
  async send(method, path, { params = [], headers = {}, body = null, retried = false } = {}) {
    const query = queryString(params);
    let payloadHash = UNSIGNED;
    const extra = { ...headers };
    if (typeof body === "string" || body instanceof Uint8Array) {
      const digest = await sha256(typeof body === "string" ? new TextEncoder().encode(body) : body);
      payloadHash = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
      extra["x-amz-checksum-sha256"] = base64(digest);
    }
    const signed = await this.headers(method, path, query, extra, payloadHash);
    const response = await fetch(path + (query ? "?" + query : ""), {
      method, headers: signed, body, cache: "no-store", credentials: "omit",
    });
    if (response.ok) return response;
    const error = await errorOf(response);
    if (error.code === "RequestTimeTooSkewed" && !retried && response.headers.get("date")) {
      this.skew = new Date(response.headers.get("date")).getTime() - Date.now();
      return this.send(method, path, { params, headers, body, retried: true });
    }
    throw error;
  }

  async xml(method, path, options) {
    const response = await this.send(method, path, options);
    return parseXml(await response.text());
  }

  async json(path, options = {}) {
    const headers = options.body ? { "content-type": "application/json", ...options.headers } : options.headers;
    const response = await this.send(options.method || "GET", path, { ...options, headers });
    if (response.status === 204) return null;
    return response.json();
  }

  // PUT with upload progress (fetch has none): resolves to the response's ETag.
  async upload(path, params, blob, headers, onProgress, signal) {
    const query = queryString(params);
    const signed = await this.headers("PUT", path, query, headers, UNSIGNED);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", path + (query ? "?" + query : ""));
      for (const [name, value] of Object.entries(signed)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => onProgress(event.loaded);
      xhr.onload = async () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve(xhr.getResponseHeader("etag"));
        } else {
          reject(await errorOf(new Response(xhr.responseText, { status: xhr.status })));
        }
      };
      xhr.onerror = () => reject(new S3Error(0, "NetworkError", "the connection failed"));
      xhr.onabort = () => reject(new S3Error(0, "Aborted", "cancelled"));
      if (signal) signal.addEventListener("abort", () => xhr.abort());
      xhr.send(blob);
    });
  }

  presign(bucket, key, expires, params = []) {
    return presign({ path: objectPath(bucket, key), params, expires, credentials: this.credentials,
                     region: this.region, now: this.now() });
  }
}
