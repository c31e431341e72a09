// index.d.ts — TypeScript declarations of the vecshard Node client
// (index.js, lib/client.js, lib/errors.js). Ids are uint64: they go in as
// number (safe integers), bigint, decimal string or any integer typed array,
// and come out as bigint / BigUint64Array.

import type { ChannelCredentials, ChannelOptions, Metadata } from '@grpc/grpc-js';

/** An id: a safe non-negative integer, a bigint or a decimal string, < 2^64. */
export type Id = number | bigint | string;
/** A list of ids. */
export type Ids = ArrayLike<Id> | BigUint64Array | Uint32Array | Int32Array;
/** One vector. */
export type Vector = Float32Array | Float64Array | ArrayLike<number>;
/** Several vectors: one flat row-major buffer, or one entry per vector. */
export type Vectors = Float32Array | Float64Array | number[] | ArrayLike<Vector>;
/** A payload: bytes, or a string stored as UTF-8; null = none. */
export type Payload = Buffer | Uint8Array | string | null | undefined;
/** Distance function of a collection. */
export type Metric = 'l2' | 'ip' | 'cosine';

/** A typed attribute value (docs/filtering.md): an integral number within
 * Number.MAX_SAFE_INTEGER or a bigint is an int, other numbers doubles, an
 * array of strings is a tags list. */
export type AttributeValue = number | bigint | string | boolean | string[];
export type Attributes = Record<string, AttributeValue>;

/** A filter in the JSON form of docs/filtering.md. */
export type Filter =
  | { and: Filter[] }
  | { or: Filter[] }
  | { not: Filter }
  | { eq: Record<string, number | bigint | string | boolean> }
  | { in: Record<string, (number | bigint | string | boolean)[]> }
  | { range: Record<string, { gt?: number; gte?: number; lt?: number; lte?: number }> }
  | { exists: string | Record<string, boolean> }
  | { any: Record<string, string[]> }
  | { all: Record<string, string[]> };

/** Per-call options every method takes. */
export interface CallOptions {
  /** Deadline of the call in milliseconds (default: the client's timeoutMs). */
  timeoutMs?: number;
}

export interface ClientOptions {
  /** Deadline of each call in milliseconds; default 30000. */
  timeoutMs?: number;
  /** Sent as "authorization: Bearer <apiKey>" metadata on every call. */
  apiKey?: string;
  /** true: TLS with the system roots; or the PEM buffers to use. */
  tls?: boolean | { rootCerts?: Buffer; privateKey?: Buffer; certChain?: Buffer };
  /** Channel credentials; overrides tls. */
  credentials?: ChannelCredentials;
  /** Largest request or reply; default 64 MiB (the router's default). */
  maxMessageBytes?: number;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
}

/** A collection's configuration, as stored by the cluster. */
export interface CollectionConfig {
  name: string;
  dim: number;
  metric: Metric;
  M: number;
  efConstruction: number;
  efSearch: number;
  shards: number;
  replicas: number;
  /** Creation time, Unix milliseconds. */
  createdAt: number;
  quantization: Quantization;
}

/** "sq8": 8-bit codes walk the graph and float vectors re-rank (docs/engine.md). */
export type Quantization = 'none' | 'sq8';

export interface CreateCollectionOptions extends CallOptions {
  /** Default "l2". */
  metric?: Metric;
  /** Default 1. */
  shards?: number;
  /** Default 1. */
  replicas?: number;
  /** Default 16. */
  M?: number;
  /** Default 200. */
  efConstruction?: number;
  /** Default 64. */
  efSearch?: number;
  /** Default "none". */
  quantization?: Quantization;
}

/** One shard's placement. */
export interface ShardInfo {
  collection: string;
  shard: number;
  epoch: bigint;
  primary: string;
  replicas: string[];
  inSync: string[];
  recovering: string[];
  lsn: bigint;
  primaryState: string;
  primaryStateReason: string;
}

export interface CollectionDescription {
  config: CollectionConfig;
  shards: ShardInfo[];
  /** Live points (the primaries' counts, best effort). */
  count: number;
}

export interface NodeInfo {
  id: string;
  addr: string;
  alive: boolean;
  replicas: number;
  primaries: number;
  version: string;
  /** Start time, Unix milliseconds. */
  startedAt: number;
}

export interface ClusterStatus {
  nodes: NodeInfo[];
  collections: CollectionConfig[];
  shards: ShardInfo[];
  controller: string;
  revision: bigint;
}

export interface RetryOptions extends CallOptions {
  /** Retries of a call failing UNAVAILABLE or ABORTED; default 3. */
  retries?: number;
  /** Backoff before the first retry, doubled each time up to 5 s; default 100 ms. */
  retryBackoffMs?: number;
  /** Called before each retry. */
  onRetry?: (err: VecshardError, attempt: number) => void;
}

export interface UpsertOptions extends RetryOptions {
  /** One payload per id. */
  payloads?: ArrayLike<Payload> | null;
  /** One attributes object per id (replacing the point's attributes). */
  attributes?: ArrayLike<Attributes | null | undefined> | null;
  /** Points per call; default 1000 (also cut to a quarter of maxMessageBytes). */
  batchSize?: number;
  /** Calls in flight at once; default 2. */
  parallel?: number;
  /** true: a progress bar on stderr when it is a terminal; or a callback. */
  progress?: boolean | ((done: number, total: number) => void);
}

export interface SearchOptions extends CallOptions {
  /** HNSW candidate-list size; default the collection's efSearch. */
  ef?: number | null;
  /** Default false. */
  withPayload?: boolean;
  /** Default false. */
  withVector?: boolean;
  /** Default false. */
  withAttributes?: boolean;
  /** Only points matching it are hits. */
  filter?: Filter | null;
  /** Fraction of shards that must answer; default 1.0. */
  minCoverage?: number;
  /** Automatic ef: the recall@k wanted, in (0, 1]; not with ef. */
  targetRecall?: number | null;
}

export interface CountOptions extends CallOptions {
  /** Count only matching points; default every point. */
  filter?: Filter | null;
}

export interface DeleteOptions extends RetryOptions {
  /** With ids null: delete every matching point (not retried). */
  filter?: Filter | null;
}

export interface Coverage {
  shardsTotal: number;
  shardsOk: number;
  missingShards: number[];
  partial: boolean;
}

export interface Hit {
  id: bigint;
  distance: number;
  payload?: Buffer;
  vector?: Float32Array;
  attributes?: Attributes;
}

/** The hits of a search batch, row-major (nq, k). */
export class SearchResult {
  readonly nq: number;
  readonly k: number;
  /** nq*k ids; a row with fewer than k hits is padded with UINT64_MAX. */
  readonly ids: BigUint64Array;
  /** nq*k distances; padding is Infinity. */
  readonly distances: Float32Array;
  /** Hits of each query (<= k). */
  readonly counts: Uint32Array;
  /** nq*k payloads when withPayload (null at padding), else null. */
  readonly payloads: (Buffer | null)[] | null;
  /** nq*k vectors when withVector (null at padding), else null. */
  readonly vectors: (Float32Array | null)[] | null;
  /** nq*k attribute objects when withAttributes (null at padding), else null. */
  readonly attributes: (Attributes | null)[] | null;
  readonly coverage: Coverage;
  /** With targetRecall: the widest ef a shard used and the lowest recall estimate. */
  readonly autoEf: { ef: number; estimatedRecall: number } | null;
  /** Query i's hits, best first. */
  hits(i: number): Hit[];
}

export interface GetOptions extends CallOptions {
  /** Default true. */
  withVector?: boolean;
  /** Default true. */
  withPayload?: boolean;
  /** Default false. */
  withAttributes?: boolean;
}

export interface Point {
  id: bigint;
  /** null when withVector is false. */
  vector: Float32Array | null;
  /** null when withPayload is false; empty when the point has none. */
  payload: Buffer | null;
  /** Set only when withAttributes. */
  attributes?: Attributes;
}

export interface GetResult {
  /** Found points, in the order of the ids' first occurrence. */
  points: Point[];
  /** Requested ids that do not exist, in request order. */
  missingIds: BigUint64Array;
}

/** A connection to a vecshard router; every method returns a promise. */
export class Client {
  /** address "host:port"; default $VECSHARD_ROUTER. */
  constructor(address?: string | null, options?: ClientOptions);
  constructor(options: ClientOptions);
  readonly address: string;
  close(): void;
  createCollection(name: string, dim: number, options?: CreateCollectionOptions): Promise<CollectionConfig>;
  dropCollection(name: string, options?: CallOptions): Promise<void>;
  listCollections(options?: CallOptions): Promise<CollectionConfig[]>;
  describe(name: string, options?: CallOptions): Promise<CollectionDescription>;
  collectionExists(name: string, options?: CallOptions): Promise<boolean>;
  count(name: string, options?: CountOptions): Promise<number>;
  /** Resolves to the number of points written. */
  upsert(name: string, ids: Ids, vectors: Vectors, options?: UpsertOptions): Promise<number>;
  search(name: string, queries: Vectors, k?: number, options?: SearchOptions): Promise<SearchResult>;
  get(name: string, ids: Ids, options?: GetOptions): Promise<GetResult>;
  /** Resolves to the number of ids processed (absent ones included). */
  delete(name: string, ids: Ids | null, options?: DeleteOptions): Promise<number>;
  status(collection?: string, options?: CallOptions): Promise<ClusterStatus>;
}

/** 2^64 - 1, the id of padding slots in SearchResult.ids. */
export const UINT64_MAX: bigint;
/** gRPC code names by number ("OK", "CANCELLED", ...). */
export const CODE_NAMES: readonly string[];

/** Any failed call: `message` is the server's message. */
export class VecshardError extends Error {
  constructor(message: string, code?: number, metadata?: Metadata | null);
  /** Numeric gRPC status code. */
  readonly code: number;
  /** Its name, e.g. "NOT_FOUND". */
  readonly codeName: string;
  /** Trailing metadata of the failed call, if any. */
  readonly metadata: Metadata | null;
  /** upsert only: index (in ids) of the first point of the failed batch. */
  pointOffset?: number;
}

declare class CodeError extends VecshardError {
  constructor(message: string, metadata?: Metadata | null);
}
export class Cancelled extends CodeError {}
export class Unknown extends CodeError {}
export class InvalidArgument extends CodeError {}
export class DeadlineExceeded extends CodeError {}
export class NotFound extends CodeError {}
export class AlreadyExists extends CodeError {}
export class PermissionDenied extends CodeError {}
export class ResourceExhausted extends CodeError {}
export class FailedPrecondition extends CodeError {}
export class Aborted extends CodeError {}
export class OutOfRange extends CodeError {}
export class Unimplemented extends CodeError {}
export class Internal extends CodeError {}
export class Unavailable extends CodeError {}
export class DataLoss extends CodeError {}
export class Unauthenticated extends CodeError {}
