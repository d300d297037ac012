// Uploads with progress: one PUT up to MULTIPART_THRESHOLD, multipart above it
// (PART_SIZE parts, PARALLEL at a time). A failed part is retried RETRIES times with a
// growing pause; if it still fails the upload stops and can be resumed: its UploadId is
// kept in sessionStorage, and resuming asks the server which parts it holds
// (ListParts) and sends only the others, in this page or after a reload (choose the
// same file again).

import { objectPath } from "./sigv4.js";
import { all, parseXml, S3Error, text } from "./s3.js";

export const MULTIPART_THRESHOLD = 16 * 1024 * 1024;
export const PART_SIZE = 8 * 1024 * 1024;
const PARALLEL = 3;
const RETRIES = 4;

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function escapeXml(value) {
  return value.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export class Upload {
  constructor(client, bucket, key, file, onChange) {
    this.client = client;
    this.bucket = bucket;
    this.key = key;
    this.file = file;
    this.onChange = onChange;
    this.state = "queued"; // uploading | failed | done | cancelled
    this.loaded = 0;
    this.error = null;
    this.controller = null;
  }

  get path() {
    return objectPath(this.bucket, this.key);
  }

  get memo() {
    const f = this.file;
    return `shoal-upload:${this.bucket}/${this.key}:${f.size}:${f.lastModified}`;
  }

  get headers() {
    return { "content-type": this.file.type || "application/octet-stream" };
  }

  changed() {
    this.onChange(this);
  }

  async run() {
    this.state = "uploading";
    this.error = null;
    this.controller = new AbortController();
    this.changed();
    try {
      if (this.file.size <= MULTIPART_THRESHOLD) {
        await this.client.upload(this.path, [], this.file, this.headers, (n) => {
          this.loaded = n;
          this.changed();
        }, this.controller.signal);
      } else {
        await this.multipart();
      }
      this.loaded = this.file.size;
      this.state = "done";
    } catch (error) {
      if (this.state !== "cancelled") {
        this.state = "failed";
        this.error = error;
      }
    }
    this.changed();
  }

  async cancel() {
    this.state = "cancelled";
    this.controller?.abort();
    const uploadId = sessionStorage.getItem(this.memo);
    sessionStorage.removeItem(this.memo);
    if (uploadId) {
      await this.client.send("DELETE", this.path, { params: [["uploadId", uploadId]] }).catch(() => {});
    }
    this.changed();
  }

  // The parts the server already holds for `uploadId` (number -> {etag, size}); null
  // if that upload is gone (completed, aborted or expired).
  async heldParts(uploadId) {
    const held = new Map();
    let marker = "0";
    for (let page = 0; page < 100; page += 1) {
      let doc;
      try {
        doc = await this.client.xml("GET", this.path,
          { params: [["uploadId", uploadId], ["part-number-marker", marker]] });
      } catch (error) {
        if (error.code === "NoSuchUpload") return null;
        throw error;
      }
      for (const part of all(doc, "Part")) {
        held.set(Number(text(part, "PartNumber")), { etag: text(part, "ETag"), size: Number(text(part, "Size")) });
      }
      if (text(doc, "IsTruncated") !== "true") break;
      marker = text(doc, "NextPartNumberMarker");
    }
    return held;
  }

  async multipart() {
    let uploadId = sessionStorage.getItem(this.memo);
    let held = uploadId ? await this.heldParts(uploadId) : null;
    if (held === null) {
      const doc = await this.client.xml("POST", this.path, { params: [["uploads", ""]], headers: this.headers });
      uploadId = text(doc, "UploadId");
      sessionStorage.setItem(this.memo, uploadId);
      held = new Map();
    }
    const count = Math.ceil(this.file.size / PART_SIZE);
    const sizeOf = (n) => Math.min(PART_SIZE, this.file.size - (n - 1) * PART_SIZE);
    const etags = new Map();
    const progress = new Map();
    for (const [n, part] of held) {
      if (n <= count && part.size === sizeOf(n)) {
        etags.set(n, part.etag);
        progress.set(n, part.size);
      }
    }
    const report = () => {
      this.loaded = Array.from(progress.values()).reduce((a, b) => a + b, 0);
      this.changed();
    };
    report();
    const queue = [];
    for (let n = 1; n <= count; n += 1) if (!etags.has(n)) queue.push(n);
    const worker = async () => {
      while (queue.length && this.state === "uploading") {
        const n = queue.shift();
        const blob = this.file.slice((n - 1) * PART_SIZE, (n - 1) * PART_SIZE + sizeOf(n));
        for (let attempt = 0; ; attempt += 1) {
          try {
            const etag = await this.client.upload(this.path,
              [["partNumber", String(n)], ["uploadId", uploadId]], blob, {}, (loaded) => {
                progress.set(n, loaded);
                report();
              }, this.controller.signal);
            etags.set(n, etag);
            progress.set(n, blob.size);
            report();
            break;
          } catch (error) {
            progress.set(n, 0);
            const retriable = error.status === 0 || error.status >= 500;
            if (this.state !== "uploading" || !retriable || attempt >= RETRIES) throw error;
            await pause(500 * 2 ** attempt);
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
    if (this.state !== "uploading") throw new S3Error(0, "Aborted", "cancelled");
    const parts = Array.from(etags.keys()).sort((a, b) => a - b).map((n) =>
      `<Part><PartNumber>${n}</PartNumber><ETag>${escapeXml(etags.get(n))}</ETag></Part>`);
    const body = `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`;
    const response = await this.client.send("POST", this.path, { params: [["uploadId", uploadId]], body });
    const answer = parseXml(await response.text());
    const code = answer.querySelector("Error > Code")?.textContent;
    if (code) throw new S3Error(200, code, answer.querySelector("Error > Message")?.textContent || "");
    sessionStorage.removeItem(this.memo);
  }
}
