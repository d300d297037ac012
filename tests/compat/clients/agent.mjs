// The scenario's steps with the AWS SDK for JavaScript v3 (@aws-sdk/client-s3 and
// @aws-sdk/lib-storage) at its defaults: CRC32 checksums, aws-chunked trailers, and
// virtual-hosted-style addressing unless told otherwise. Same line protocol as
// agent.py: `node agent.mjs TARGET_JSON STYLE`, one JSON request per stdin line.
import { createRequire } from "node:module";
import dns from "node:dns";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import readline from "node:readline";

const require = createRequire(process.env.SHOAL_NODE_MODULES + "/");
const s3 = require("@aws-sdk/client-s3");
const { Upload } = require("@aws-sdk/lib-storage");
const { NodeHttpHandler } = require("@smithy/node-http-handler");

const target = JSON.parse(process.argv[2]);
const style = process.argv[3]; // "virtual" or "path"
const PART_SIZE = 5 * 1024 * 1024;

// Names under localhost are loopback (RFC 6761); Node asks the system resolver, which
// may not know `bucket.s3.localhost`, so such names are answered here. Users do the
// same with /etc/hosts entries or a local DNS for their base domain.
function lookup(hostname, options, callback) {
  if (hostname === "localhost" || hostname.endsWith(".localhost")) {
    if (options && options.all) return callback(null, [{ address: "127.0.0.1", family: 4 }]);
    return callback(null, "127.0.0.1", 4);
  }
  return dns.lookup(hostname, options, callback);
}

const agentOptions = { lookup, keepAlive: true };
if (target.ca_file) agentOptions.ca = fs.readFileSync(target.ca_file);
const client = new s3.S3Client({
  endpoint: target.endpoint,
  region: target.region,
  credentials: { accessKeyId: target.access_key, secretAccessKey: target.secret_key },
  forcePathStyle: style === "path",
  maxAttempts: 1,
  requestHandler: new NodeHttpHandler({
    httpAgent: new http.Agent(agentOptions),
    httpsAgent: new https.Agent(agentOptions),
  }),
});
const send = (command) => client.send(command);

const steps = {
  version: async () => require("@aws-sdk/client-s3/package.json").version,
  create_bucket: async (bucket) => {
    await send(new s3.CreateBucketCommand({ Bucket: bucket }));
  },
  upload: async (bucket, key, path, metadata) => {
    await send(
      new s3.PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: fs.readFileSync(path),
        ContentType: "text/plain",
        Metadata: metadata || {},
      }),
    );
  },
  upload_multipart: async (bucket, key, path) => {
    const params = { Bucket: bucket, Key: key, Body: fs.createReadStream(path) };
    await new Upload({ client, params, partSize: PART_SIZE, queueSize: 2 }).done();
  },
  list: async (bucket, prefix, delimiter) => {
    const keys = [];
    const prefixes = [];
    const pages = s3.paginateListObjectsV2(
      { client, pageSize: 1 },
      { Bucket: bucket, Prefix: prefix, Delimiter: delimiter },
    );
    for await (const page of pages) {
      for (const o of page.Contents || []) keys.push(o.Key);
      for (const p of page.CommonPrefixes || []) prefixes.push(p.Prefix);
    }
    return [keys, prefixes];
  },
  read_range: async (bucket, key, start, end) => {
    const got = await send(
      new s3.GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=${start}-${end}` }),
    );
    return Buffer.from(await got.Body.transformToByteArray());
  },
  copy: async (bucket, source, destination) => {
    const copySource = `${bucket}/${source.split("/").map(encodeURIComponent).join("/")}`;
    await send(new s3.CopyObjectCommand({ Bucket: bucket, Key: destination, CopySource: copySource }));
  },
  metadata: async (bucket, key) =>
    (await send(new s3.HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata,
  delete_many: async (bucket, keys) => {
    const answer = await send(
      new s3.DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: keys.map((Key) => ({ Key })) },
      }),
    );
    if (answer.Errors && answer.Errors.length) throw new Error(JSON.stringify(answer.Errors));
  },
  delete_bucket: async (bucket) => {
    await send(new s3.DeleteBucketCommand({ Bucket: bucket }));
  },
};

console.log(JSON.stringify({ result: [] }));
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const request = JSON.parse(line);
  let answer;
  try {
    const result = await steps[request.method](...request.args);
    answer = Buffer.isBuffer(result)
      ? { bytes: result.toString("base64") }
      : { result: result === undefined ? null : result };
  } catch (error) {
    answer = { error: `${error.name}: ${error.message}\n${error.stack}` };
  }
  console.log(JSON.stringify(answer));
}
client.destroy();
