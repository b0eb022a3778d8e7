// Objects in an S3 bucket (AWS or any S3-compatible server: MinIO, Ceph, s3rver). Configured the
// way every AWS tool is: endpoint, region and credentials from the SDK's own sources
// (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
// AWS_PROFILE and ~/.aws), only the bucket and key prefix from our flags. Uploads are multipart
// (lib-storage) with at most PART_SIZE x QUEUE bytes in memory; a failed upload is aborted, so
// no object appears under its key.
import { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  BackupError,
  checkKey,
  type ObjectStore,
  type StoredObject,
  StoreUnavailableError,
} from "./object-store.js";

const PART_SIZE = 8 * 1024 * 1024;
const QUEUE = 2;

export interface S3StoreOptions {
  bucket: string;
  /** Keys are `<prefix><name>`; a prefix that does not end in "/" gets one. */
  prefix?: string | undefined;
  /** The SDK's configuration as read from the environment, for tests and embedding. */
  client?: S3ClientConfig;
}

/** The SDK's client from the environment; path-style addressing when an endpoint is named (MinIO and most S3-compatible servers need it). */
export function s3ClientConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3ClientConfig {
  const endpoint = configuredEndpoint(env);
  const config: S3ClientConfig = { forcePathStyle: endpoint !== undefined };
  // Region is meaningless to most S3-compatible servers, but the SDK refuses to sign without one.
  if (endpoint !== undefined && !env.AWS_REGION && !env.AWS_DEFAULT_REGION) config.region = "us-east-1";
  return config;
}

function configuredEndpoint(env: NodeJS.ProcessEnv): string | undefined {
  return env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
}

export class S3Store implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly endpoint: string;

  constructor(options: S3StoreOptions) {
    if (!options.bucket) throw new BackupError("--s3-bucket is empty");
    this.bucket = options.bucket;
    const prefix = options.prefix ?? "";
    this.prefix = prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
    this.client = new S3Client(options.client ?? s3ClientConfigFromEnv());
    const configured =
      options.client === undefined ? configuredEndpoint(process.env) : options.client.endpoint;
    this.endpoint = typeof configured === "string" ? configured : "AWS";
    this.location = `s3://${this.bucket}/${this.prefix}`;
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (statusOf(err) === 404)
        throw new BackupError(`S3 bucket "${this.bucket}" does not exist (${this.endpoint})`);
      throw this.failure(err, "check the bucket");
    }
  }

  async put(key: string, body: AsyncIterable<Buffer>): Promise<void> {
    checkKey(key);
    // The body's own failure (a source gone, a bad trailer) is what the caller needs to see, not
    // the SDK's wrapping of it or of the abort that follows.
    let bodyError: unknown;
    const watched = async function* () {
      try {
        yield* body;
      } catch (err) {
        bodyError = err;
        throw err;
      }
    };
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.prefix + key, Body: Readable.from(watched()) },
      partSize: PART_SIZE,
      queueSize: QUEUE,
    });
    try {
      await upload.done();
    } catch (err) {
      if (bodyError !== undefined) throw bodyError;
      throw this.failure(err, `upload ${key}`);
    }
  }

  async *get(key: string): AsyncIterable<Buffer> {
    checkKey(key);
    let body: Readable;
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }),
      );
      body = res.Body as Readable;
    } catch (err) {
      if (statusOf(err) === 404) throw new BackupError(`no object ${key} in ${this.location}`);
      throw this.failure(err, `download ${key}`);
    }
    try {
      for await (const chunk of body) yield chunk as Buffer;
    } catch (err) {
      throw this.failure(err, `download ${key}`);
    }
  }

  async list(): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    // Bounded: a listing page holds up to 1000 keys; 10,000 pages is far past any retention.
    for (let page = 0; page < 10_000; page++) {
      let res: ListObjectsV2CommandOutput;
      try {
        res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, ContinuationToken: token }),
        );
      } catch (err) {
        if (statusOf(err) === 404)
          throw new BackupError(`S3 bucket "${this.bucket}" does not exist (${this.endpoint})`);
        throw this.failure(err, "list objects");
      }
      for (const o of res.Contents ?? []) {
        const name = (o.Key ?? "").slice(this.prefix.length);
        if (name !== "" && !name.includes("/")) out.push({ key: name, size: o.Size ?? 0 });
      }
      if (!res.IsTruncated) break;
      token = res.NextContinuationToken;
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
    } catch (err) {
      throw this.failure(err, `delete ${key}`);
    }
  }

  close(): void {
    this.client.destroy();
  }

  private failure(err: unknown, doing: string): BackupError {
    const message = err instanceof Error ? err.message || err.name : String(err);
    const status = statusOf(err);
    const text = `${this.location}: could not ${doing}: ${status ? `HTTP ${status} ` : ""}${message}`;
    // Answers that retrying cannot change (access denied, a bad request) are final.
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429)
      return new BackupError(text);
    return new StoreUnavailableError(text);
  }
}

function statusOf(err: unknown): number | undefined {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
  const meta = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata;
  return meta?.httpStatusCode;
}
