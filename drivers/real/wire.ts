// The authenticated envelope of every message between node services: heartbeat datagrams
// (datagrams.ts) and stream frames (streams.ts). The byte layout is in docs/wire.md.
//
// What it guarantees to a receiver that accepts a message: it was made by a holder of the
// cluster key (HMAC-SHA256, compared in constant time), for this node, this channel and
// (datagrams) this ring; its sender is a configured peer; it is not older than the newest
// incarnation seen from that sender; and it was not accepted before (a sliding window of
// sequence numbers per sender, ring and incarnation, so reordered but fresh datagrams
// still pass). A message that fails any check is dropped and counted by reason, and logged
// at most once per reason per interval with the count of lines suppressed; decoding never
// throws, whatever the bytes.
//
// What it cannot guarantee: confidentiality (payloads travel in clear); and freshness to
// a receiver that restarted, which has forgotten the windows, so a captured datagram of
// a sender's newest incarnation can be played to it once (see docs/wire.md). Streams are
// not exposed to that: their frames are authenticated under a key fresh to each
// connection.

import { createCipheriv, createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import { assert } from "../../core/assert.ts";
import type { LogEntry, NodeId } from "../../core/types.ts";

export const wireMagic = 0x5444; // "TD"
export const wireVersion = 2;

/** What an envelope carries; the number is its byte on the wire. */
export const envelopeKinds = { datagram: 1, hello: 2, helloAck: 3, helloConfirm: 4, frame: 5, ping: 6 } as const;
export type EnvelopeKind = keyof typeof envelopeKinds;
const kindByByte = new Map<number, EnvelopeKind>(Object.entries(envelopeKinds).map(([kind, byte]) => [byte, kind as EnvelopeKind]));

export const keySizeMin = 16;
export const keyIdSize = 8;
/** HMAC-SHA256: datagrams and the handshake, under the cluster key. */
export const macSize = 32;
/** AES-128-GMAC: a connection's frames and pings, under its session key. */
export const frameMacSize = 16;
/** Node names, ring names and channels, in UTF-8 bytes. */
export const nodeNameSizeMax = 64;
export const ringNameSizeMax = 64;
export const channelSizeMax = 32;
/** magic, version, kind, key id, incarnation, sequence, sent-at time. */
const fixedHeaderSize = 2 + 1 + 1 + keyIdSize + 8 + 8 + 8;
/** The smallest well-formed envelope: empty strings, an empty payload, a frame's MAC. */
export const envelopeSizeMin = fixedHeaderSize + 4 + 4 + frameMacSize;
/** No envelope is ever larger, whatever a port's own limit: the length prefix of a stream
 *  frame is checked against the port's limit before anything is buffered. */
export const envelopeSizeMaxLimit = 16 * 1024 * 1024;
/** Sequence numbers and incarnations are safe integers: 2^53 sends at a million per second
 *  last 285 years. */
const u64HighMax = 0x1f_ffff;

// ---- Keys ----

/** What signs and checks envelopes: the cluster key (or one derived from it), or one
 *  direction of a stream connection's session (FrameKey). */
export interface EnvelopeKey {
  readonly id: Buffer;
  readonly macSize: number;
  /** The MAC of an envelope's bytes; `sequence` is the envelope's (a FrameKey's nonce). */
  mac(data: Uint8Array, sequence: number): Buffer;
  verify(data: Uint8Array, mac: Uint8Array, sequence: number): boolean;
}

/** The kinds of envelope MAC'd by a connection's session (FrameKey), not the cluster key. */
export function isSessionKind(kind: EnvelopeKind): boolean {
  return kind === "frame" || kind === "ping";
}

function macSizeOf(kind: EnvelopeKind): number {
  return isSessionKind(kind) ? frameMacSize : macSize;
}

/** The cluster key, or a key derived from it for one stream connection. */
export class WireKey implements EnvelopeKey {
  readonly macSize = macSize;
  /** Names the cluster key on the wire, so that a datagram of another cluster (or made
   *  under another key) is told apart from a forged one. Derived keys keep the id of the
   *  cluster key they come from. */
  readonly id: Buffer;
  /** Imported once: an HMAC keyed with raw bytes imports them again at every message,
   *  which was a third of a farm node's idle CPU. */
  readonly #secret: KeyObject;

  constructor(secret: Uint8Array, id?: Buffer) {
    assert(secret.length >= keySizeMin, `a cluster key needs at least ${keySizeMin} bytes, this one has ${secret.length}`);
    this.#secret = createSecretKey(Buffer.from(secret));
    this.id = id ?? createHmac("sha256", this.#secret).update("tandem key id v1").digest().subarray(0, keyIdSize);
    assert(this.id.length === keyIdSize, "key ids are keyIdSize bytes");
  }

  mac(data: Uint8Array, _sequence = 0): Buffer {
    return createHmac("sha256", this.#secret).update(data).digest();
  }

  /** Constant-time: how much of the MAC matched does not show in the time taken. */
  verify(data: Uint8Array, mac: Uint8Array, _sequence = 0): boolean {
    return mac.length === macSize && timingSafeEqual(this.mac(data), mac);
  }

  /** A session key's two directions of frames (this key derived for one connection): what
   *  the connector sends under, and what the acceptor sends under. */
  frameKeys(): { readonly connector: FrameKey; readonly acceptor: FrameKey } {
    const key = createSecretKey(createHmac("sha256", this.#secret).update(frameKeyLabel).digest().subarray(0, 16));
    return { connector: new FrameKey(this.id, key, 0), acceptor: new FrameKey(this.id, key, 1) };
  }

  /** A key for one purpose (one connection), derived from this one and the given parts. */
  derive(label: string, parts: readonly Uint8Array[]): WireKey {
    const hmac = createHmac("sha256", this.#secret).update(label);
    for (const part of parts) hmac.update(lengthPrefix(part.length)).update(part);
    return new WireKey(hmac.digest(), this.id);
  }
}

const frameKeyLabel = "tandem frame gmac v2";

/** One direction of a connection's frames: AES-128-GCM's tag of an empty message with the
 *  envelope as associated data (GMAC: 0.06 ms per MiB here, HMAC-SHA256 0.8 ms, a resync's
 *  largest cost after garbage), nonce = direction (0 the connector's frames, 1 the
 *  acceptor's), 3 zero bytes, the envelope's sequence number. The key is new for every
 *  connection and a direction's sequence numbers only grow: no nonce repeats under a key. */
export class FrameKey implements EnvelopeKey {
  readonly id: Buffer;
  readonly macSize = frameMacSize;
  readonly #key: KeyObject;
  readonly #direction: number;

  constructor(id: Buffer, key: KeyObject, direction: 0 | 1) {
    this.id = id;
    this.#key = key;
    this.#direction = direction;
  }

  mac(data: Uint8Array, sequence: number): Buffer {
    const nonce = Buffer.alloc(12);
    nonce.writeUInt8(this.#direction, 0);
    writeU64(nonce, sequence, 4);
    const cipher = createCipheriv("aes-128-gcm", this.#key, nonce, { authTagLength: frameMacSize });
    cipher.setAAD(data);
    cipher.final();
    return cipher.getAuthTag();
  }

  verify(data: Uint8Array, mac: Uint8Array, sequence: number): boolean {
    return mac.length === frameMacSize && timingSafeEqual(this.mac(data, sequence), mac);
  }
}

/** Why a key cannot be a cluster key, or null. For the service to check before it builds ports. */
export function clusterKeyProblem(key: Uint8Array): string | null {
  if (key.length < keySizeMin) return `the cluster key has ${key.length} bytes; it needs at least ${keySizeMin} (generate one with: head -c 32 /dev/urandom > cluster.key)`;
  if (key.every((byte) => byte === key[0])) return "the cluster key is one byte repeated; generate a random one (head -c 32 /dev/urandom > cluster.key)";
  return null;
}

function lengthPrefix(length: number): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(length);
  return prefix;
}

// ---- Envelopes ----

export interface EnvelopeFields {
  readonly kind: EnvelopeKind;
  readonly incarnation: number;
  readonly sequence: number;
  /** The sender's wall clock (Unix ms) when it sent: for logs and an optional skew check. */
  readonly sentAtUnixMs: number;
  readonly from: NodeId;
  readonly to: NodeId;
  /** Which port of the node service: a datagram of one port is never accepted by another. */
  readonly channel: string;
  /** The ring a datagram was sent on; "" on streams. */
  readonly ring: string;
}

export interface Envelope extends EnvelopeFields {
  readonly keyId: Buffer;
  /** The payload's bytes (UTF-8 JSON), not yet parsed. */
  readonly payload: Buffer;
  /** The bytes the MAC covers. */
  readonly signed: Buffer;
  readonly mac: Buffer;
}

/** Bytes a payload carries unencoded (a file's blocks): in an envelope, JSON names them
 *  {"$b":[offset,length]} and they follow the JSON text after a NUL byte (which JSON text
 *  never holds), so neither side turns them into text (base64, escaping, parsing). Anywhere
 *  else (a log, a test's JSON round trip) they serialise as base64, which decoders take too. */
export class Attachment {
  readonly data: Uint8Array;
  constructor(data: Uint8Array) {
    this.data = data;
  }
  toJSON(): unknown {
    const into = attaching;
    if (into === null) return Buffer.from(this.data.buffer, this.data.byteOffset, this.data.byteLength).toString("base64");
    const offset = into.bytes;
    into.parts.push(this.data);
    into.bytes += this.data.byteLength;
    return { $b: [offset, this.data.byteLength] };
  }
}

/** The attachments of the payload being serialised (encodeEnvelope; synchronous). */
let attaching: { parts: Uint8Array[]; bytes: number } | null = null;

/** Encodes and signs an envelope; null when it would exceed `sizeMax` (the caller counts it). */
export function encodeEnvelope(fields: EnvelopeFields, payload: unknown, key: EnvelopeKey, sizeMax: number): Buffer | null {
  return encodeAfter(0, fields, payload, key, sizeMax);
}

/** An envelope as a stream frame (its length first), made in one buffer: framing a 1 MiB
 *  envelope afterwards copied it once more; in a buffer from `allocate` when given (of
 *  exactly the size asked). Null as encodeEnvelope. */
export function encodeFrame(fields: EnvelopeFields, payload: unknown, key: EnvelopeKey, sizeMax: number, allocate?: (size: number) => Buffer): Buffer | null {
  const out = encodeAfter(framePrefixSize, fields, payload, key, sizeMax, allocate);
  out?.writeUInt32BE(out.length - framePrefixSize, 0);
  return out;
}

/** The envelope, `headroom` bytes into a buffer of its own (every byte of which is written). */
function encodeAfter(headroom: number, fields: EnvelopeFields, payload: unknown, key: EnvelopeKey, sizeMax: number, allocate: (size: number) => Buffer = Buffer.allocUnsafe): Buffer | null {
  checkFields(fields);
  assert(sizeMax >= envelopeSizeMin && sizeMax <= envelopeSizeMaxLimit, `envelope size limit ${sizeMax} out of range`);
  const attached: { parts: Uint8Array[]; bytes: number } = { parts: [], bytes: 0 };
  attaching = attached;
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } finally {
    attaching = null;
  }
  assert(typeof json === "string", "a payload must be JSON-serialisable");
  const strings = [fields.from, fields.to, fields.channel, fields.ring].map((text) => Buffer.from(text, "utf8"));
  const text = Buffer.from(json, "utf8");
  const bodySize = text.length + (attached.parts.length === 0 ? 0 : 1 + attached.bytes);
  assert(key.macSize === macSizeOf(fields.kind), `a ${fields.kind} envelope under a key of ${key.macSize}-byte MACs`);
  const size = fixedHeaderSize + 4 + 4 + key.macSize + strings.reduce((sum, bytes) => sum + bytes.length, 0) + bodySize;
  if (size > sizeMax) return null;
  // Not zeroed: every byte is written below (the last assertion checks the count).
  const whole = allocate(headroom + size);
  assert(whole.length === headroom + size, "an allocated frame buffer has the size asked");
  const out = whole.subarray(headroom);
  let offset = out.writeUInt16BE(wireMagic, 0);
  offset = out.writeUInt8(wireVersion, offset);
  offset = out.writeUInt8(envelopeKinds[fields.kind], offset);
  offset += key.id.copy(out, offset);
  offset = writeU64(out, fields.incarnation, offset);
  offset = writeU64(out, fields.sequence, offset);
  offset = writeU64(out, fields.sentAtUnixMs, offset);
  for (const bytes of strings) {
    offset = out.writeUInt8(bytes.length, offset);
    offset += bytes.copy(out, offset);
  }
  offset = out.writeUInt32BE(bodySize, offset);
  offset += text.copy(out, offset);
  if (attached.parts.length > 0) {
    offset = out.writeUInt8(0, offset);
    for (const part of attached.parts) {
      out.set(part, offset);
      offset += part.byteLength;
    }
  }
  key.mac(out.subarray(0, offset), fields.sequence).copy(out, offset);
  assert(offset + key.macSize === size, "encoded envelope size matches its computed size");
  return whole;
}

function checkFields(fields: EnvelopeFields): void {
  assert(isU53(fields.incarnation), `incarnation ${fields.incarnation} is not a safe non-negative integer`);
  assert(isU53(fields.sequence), `sequence ${fields.sequence} is not a safe non-negative integer`);
  assert(isU53(fields.sentAtUnixMs), `sent-at time ${fields.sentAtUnixMs} is not a safe non-negative integer`);
  assert(nameOk(fields.from, nodeNameSizeMax, false), `sender name ${JSON.stringify(fields.from)} is empty or over ${nodeNameSizeMax} bytes`);
  assert(nameOk(fields.to, nodeNameSizeMax, false), `recipient name ${JSON.stringify(fields.to)} is empty or over ${nodeNameSizeMax} bytes`);
  assert(nameOk(fields.channel, channelSizeMax, true), `channel ${JSON.stringify(fields.channel)} over ${channelSizeMax} bytes`);
  assert(nameOk(fields.ring, ringNameSizeMax, true), `ring ${JSON.stringify(fields.ring)} over ${ringNameSizeMax} bytes`);
}

function nameOk(name: string, sizeMax: number, emptyOk: boolean): boolean {
  const size = Buffer.byteLength(name, "utf8");
  return (emptyOk || size > 0) && size <= sizeMax && !name.includes("\uFFFD");
}

function isU53(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function writeU64(out: Buffer, value: number, offset: number): number {
  offset = out.writeUInt32BE(Math.floor(value / 2 ** 32), offset);
  return out.writeUInt32BE(value >>> 0, offset);
}

export type ParseFailure = "oversized" | "unparsable" | "unsupported-version";
export type ParseResult = { readonly ok: true; readonly envelope: Envelope } | { readonly ok: false; readonly reason: ParseFailure; readonly detail: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads an envelope's structure without trusting any of it. Never throws. */
export function parseEnvelope(bytes: Uint8Array, sizeMax: number): ParseResult {
  if (bytes.length > sizeMax) return fail("oversized", `${bytes.length} bytes, over the limit of ${sizeMax}`);
  if (bytes.length < envelopeSizeMin) return fail("unparsable", `${bytes.length} bytes, shorter than any envelope`);
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (data.readUInt16BE(0) !== wireMagic) return fail("unparsable", "not a tandem message (bad magic)");
  const version = data.readUInt8(2);
  if (version !== wireVersion) return fail("unsupported-version", `wire version ${version}; this node speaks ${wireVersion}`);
  const kind = kindByByte.get(data.readUInt8(3));
  if (kind === undefined) return fail("unparsable", `unknown message kind ${data.readUInt8(3)}`);
  const keyId = data.subarray(4, 4 + keyIdSize);
  const reader = { offset: 4 + keyIdSize };
  const incarnation = readU64(data, reader);
  const sequence = readU64(data, reader);
  const sentAtUnixMs = readU64(data, reader);
  if (incarnation === null || sequence === null || sentAtUnixMs === null) return fail("unparsable", "a number over 2^53");
  const from = readString(data, reader, nodeNameSizeMax);
  const to = readString(data, reader, nodeNameSizeMax);
  const channel = readString(data, reader, channelSizeMax);
  const ring = readString(data, reader, ringNameSizeMax);
  if (from === null || to === null || channel === null || ring === null) return fail("unparsable", "a name is too long, truncated or not UTF-8");
  if (from === "" || to === "") return fail("unparsable", "an empty node name");
  if (reader.offset + 4 > data.length) return fail("unparsable", "truncated before the payload");
  const payloadSize = data.readUInt32BE(reader.offset);
  const payloadStart = reader.offset + 4;
  const tagSize = macSizeOf(kind);
  if (payloadStart + payloadSize + tagSize !== data.length) return fail("unparsable", `payload of ${payloadSize} bytes does not fit the ${data.length}-byte message`);
  const payload = data.subarray(payloadStart, payloadStart + payloadSize);
  const signed = data.subarray(0, payloadStart + payloadSize);
  const mac = data.subarray(payloadStart + payloadSize);
  return { ok: true, envelope: { kind, keyId, incarnation, sequence, sentAtUnixMs, from, to, channel, ring, payload, signed, mac } };
}

function fail(reason: ParseFailure, detail: string): ParseResult {
  return { ok: false, reason, detail };
}

function readU64(data: Buffer, reader: { offset: number }): number | null {
  const high = data.readUInt32BE(reader.offset);
  const low = data.readUInt32BE(reader.offset + 4);
  reader.offset += 8;
  return high > u64HighMax ? null : high * 2 ** 32 + low;
}

/** A length-prefixed UTF-8 string, or null when it is too long, truncated or not UTF-8. */
function readString(data: Buffer, reader: { offset: number }, sizeMax: number): string | null {
  if (reader.offset >= data.length) return null;
  const size = data.readUInt8(reader.offset);
  const start = reader.offset + 1;
  if (size > sizeMax || start + size > data.length) return null;
  reader.offset = start + size;
  try {
    return utf8.decode(data.subarray(start, start + size));
  } catch {
    return null;
  }
}

/** Checks the key id, then the MAC. Only an envelope that passes may be looked into further. */
export function authenticate(envelope: Envelope, key: EnvelopeKey): "wrong-cluster" | "bad-mac" | null {
  if (!timingSafeEqual(envelope.keyId, key.id)) return "wrong-cluster";
  return key.verify(envelope.signed, envelope.mac, envelope.sequence) ? null : "bad-mac";
}

/** The payload's JSON value, attachments in place (as Uint8Arrays of their own), or
 *  undefined when it is not JSON or names bytes it does not hold. Call only once
 *  authenticated: unauthenticated bytes never reach the JSON parser. */
export function parsePayload(envelope: Envelope): unknown {
  const payload = envelope.payload;
  const end = payload.indexOf(0);
  try {
    if (end < 0) return JSON.parse(utf8.decode(payload)) as unknown;
    // Views of the frame's own bytes, not copies: nothing writes into a frame once read
    // (FrameReader joins chunks into new buffers; a socket or datagram read gives a new
    // one). A copy of a resync's every MiB cost an allocation the collector had to follow.
    const rest = payload.subarray(end + 1);
    const attachments = new Uint8Array(rest.buffer, rest.byteOffset, rest.byteLength);
    // A walk of the parsed value, not a reviver: JSON.parse with one cost a resync's
    // secondary 2.2 ms per MiB of 4 KiB blocks (a call per value, with its source text).
    return withAttachments(JSON.parse(utf8.decode(payload.subarray(0, end))) as unknown, attachments);
  } catch {
    return undefined;
  }
}

/** `value` with each {"$b":[offset,length]} replaced by those bytes of `attachments`
 *  (throws RangeError for bytes it does not hold). */
function withAttachments(value: unknown, attachments: Uint8Array): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) value[index] = withAttachments(value[index], attachments);
    return value;
  }
  // Objects and arrays change in place (an own "__proto__" that JSON.parse made stays an
  // own property: assignment finds it before the prototype's accessor).
  const record = value as Record<string, unknown>;
  const where = record["$b"];
  if (where !== undefined && Array.isArray(where) && where.length === 2 && Object.keys(record).length === 1) {
    const [offset, length] = where as unknown[];
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || (offset as number) < 0 || (length as number) < 0 || (offset as number) + (length as number) > attachments.length) throw new RangeError("an attachment outside the payload");
    return attachments.subarray(offset as number, (offset as number) + (length as number));
  }
  for (const key of Object.keys(record)) {
    const child = record[key];
    const replaced = withAttachments(child, attachments);
    if (replaced !== child) record[key] = replaced;
  }
  return record;
}

// ---- Rejections: reasons, counters and a rate-limited log ----

export const rejectReasons = [
  /** Larger than the port accepts. */
  "oversized",
  /** Not an envelope: bad magic, truncated, lengths that do not add up, not UTF-8. */
  "unparsable",
  /** Another wire version (a node of a newer or older release). */
  "unsupported-version",
  /** Made under another key id: another cluster, or a node with another key file. */
  "wrong-cluster",
  /** Right key id, wrong MAC: forged or corrupted. */
  "bad-mac",
  /** Authentic, but its sender is not a peer in this node's cluster.xml. */
  "unknown-sender",
  /** Authentic, but for another node, channel, ring or message kind: replayed elsewhere. */
  "misdirected",
  /** From an incarnation older than the newest seen from that sender: from before its restart. */
  "stale-incarnation",
  /** Its sequence number was accepted already. */
  "replayed",
  /** Its sequence number is behind the replay window. */
  "too-old",
  /** Sent further from this node's wall clock than allowed (when a limit is configured). */
  "clock-skew",
  /** Authentic, but the payload is not what this port carries (not JSON, or refused by the codec). */
  "bad-payload",
  /** A stream frame out of turn: a sequence gap, a handshake step out of order. */
  "protocol",
] as const;
export type RejectReason = (typeof rejectReasons)[number];
export type RejectCounts = Record<RejectReason, number>;

export const rejectLogIntervalMsDefault = 10_000;

/**
 * Counts events by reason and logs them without letting a flood (of garbage datagrams, of
 * failed sends) flood the log: at most one line per reason per interval; the next line
 * says how many were suppressed since the previous one.
 */
export class RateLimitedLog<Reason extends string> {
  readonly counts: Record<Reason, number>;
  readonly #event: string;
  readonly #log: (entry: LogEntry) => void;
  readonly #nowMs: () => number;
  readonly #intervalMs: number;
  readonly #lastLineMs = new Map<Reason, number>();
  readonly #suppressed = new Map<Reason, number>();

  constructor(event: string, reasons: readonly Reason[], log: (entry: LogEntry) => void, nowMs: () => number, intervalMs = rejectLogIntervalMsDefault) {
    assert(Number.isFinite(intervalMs) && intervalMs >= 0, `log interval ${intervalMs} invalid`);
    this.counts = Object.fromEntries(reasons.map((reason) => [reason, 0])) as Record<Reason, number>;
    this.#event = event;
    this.#log = log;
    this.#nowMs = nowMs;
    this.#intervalMs = intervalMs;
  }

  note(reason: Reason, fields: Readonly<Record<string, string | number>>): void {
    assert(reason in this.counts, `unknown reason ${reason}`);
    this.counts[reason]++;
    const nowMs = this.#nowMs();
    const lastMs = this.#lastLineMs.get(reason);
    if (lastMs !== undefined && nowMs - lastMs < this.#intervalMs) {
      this.#suppressed.set(reason, (this.#suppressed.get(reason) ?? 0) + 1);
      return;
    }
    const suppressed = this.#suppressed.get(reason) ?? 0;
    this.#lastLineMs.set(reason, nowMs);
    this.#suppressed.set(reason, 0);
    this.#log({ level: "warn", event: this.#event, fields: { reason, ...fields, suppressed, total: this.counts[reason] } });
  }
}

/** Rejected messages: event `wire.rejected`. */
export function rejectLog(log: (entry: LogEntry) => void, nowMs: () => number, intervalMs?: number): RateLimitedLog<RejectReason> {
  return new RateLimitedLog("wire.rejected", rejectReasons, log, nowMs, intervalMs);
}

// ---- Freshness: incarnations and replay windows ----

/** Sequence numbers a window remembers behind the newest; older ones are "too-old". At 20
 *  heartbeats a second per ring that is over three minutes of reordering. */
export const replayWindowSize = 4096;
const windowWordCount = replayWindowSize / 32 + 1;

/**
 * Which sequence numbers of one sender's lane were accepted, among the newest
 * `replayWindowSize` (the bitmap of RFC 6479, as WireGuard keeps it): anything newer
 * than the newest passes, anything within the window passes once, anything behind it fails.
 */
export class ReplayWindow {
  #newest = -1;
  readonly #words = new Uint32Array(windowWordCount);

  check(sequence: number): "replayed" | "too-old" | null {
    assert(isU53(sequence), `sequence ${sequence} is not a safe non-negative integer`);
    if (sequence > this.#newest) return null;
    if (this.#newest - sequence >= replayWindowSize) return "too-old";
    return this.#has(sequence) ? "replayed" : null;
  }

  /** Records `sequence` as accepted; check() must have passed it. */
  accept(sequence: number): void {
    assert(this.check(sequence) === null, `sequence ${sequence} accepted twice or too old`);
    if (sequence > this.#newest) {
      const newestWord = this.#newest < 0 ? -1 : Math.floor(this.#newest / 32);
      const word = Math.floor(sequence / 32);
      // Clears the words that scroll into view; at most the whole bitmap.
      const clearCount = Math.min(word - newestWord, windowWordCount);
      for (let step = 1; step <= clearCount; step++) this.#words[(word - clearCount + step) % windowWordCount] = 0;
      this.#newest = sequence;
    }
    const index = Math.floor(sequence / 32) % windowWordCount;
    this.#words[index] = this.#words[index]! | (1 << sequence % 32);
    assert(this.#has(sequence), "an accepted sequence is remembered");
  }

  #has(sequence: number): boolean {
    return (this.#words[Math.floor(sequence / 32) % windowWordCount]! & (1 << sequence % 32)) !== 0;
  }
}

/** Lanes (rings) tracked per sender: a bound on what a key holder can make a receiver keep. */
export const lanesPerSenderMax = 64;

/**
 * The newest incarnation seen from each sender and, for it, one replay window per lane
 * (a ring: each ring has its own sequence numbers, so that one slow ring does not push
 * another's datagrams out of the window). A higher incarnation means the sender restarted:
 * its windows start afresh and everything of the older incarnation is stale from then on.
 */
export class Freshness {
  readonly #senders = new Map<NodeId, { incarnation: number; lanes: Map<string, ReplayWindow> }>();

  check(from: NodeId, lane: string, incarnation: number, sequence: number): "stale-incarnation" | "replayed" | "too-old" | null {
    const sender = this.#senders.get(from);
    if (sender === undefined || incarnation > sender.incarnation) return null;
    if (incarnation < sender.incarnation) return "stale-incarnation";
    return sender.lanes.get(lane)?.check(sequence) ?? null;
  }

  /** Records the message as accepted; check() must have passed it. The caller bounds the
   *  senders (only configured peers get here). */
  accept(from: NodeId, lane: string, incarnation: number, sequence: number): void {
    assert(this.check(from, lane, incarnation, sequence) === null, `message ${from}/${lane}/${incarnation}/${sequence} accepted while not fresh`);
    let sender = this.#senders.get(from);
    if (sender === undefined || incarnation > sender.incarnation) {
      sender = { incarnation, lanes: new Map() };
      this.#senders.set(from, sender);
    }
    let window = sender.lanes.get(lane);
    if (window === undefined) {
      assert(sender.lanes.size < lanesPerSenderMax, `more than ${lanesPerSenderMax} lanes from ${from}`);
      window = new ReplayWindow();
      sender.lanes.set(lane, window);
    }
    window.accept(sequence);
  }

  /** The newest incarnation accepted from `from`, or null. */
  incarnationOf(from: NodeId): number | null {
    return this.#senders.get(from)?.incarnation ?? null;
  }

  /** Records an incarnation seen through another path (a stream handshake), so that older
   *  ones are stale from now on; a no-op when it is not newer. */
  noteIncarnation(from: NodeId, incarnation: number): void {
    const sender = this.#senders.get(from);
    if (sender === undefined || incarnation > sender.incarnation) this.#senders.set(from, { incarnation, lanes: new Map() });
  }
}

// ---- Stream framing ----

/** Bytes of a stream frame's length prefix. */
export const framePrefixSize = 4;

export function frame(envelope: Buffer): Buffer {
  return Buffer.concat([lengthPrefix(envelope.length), envelope]);
}

/**
 * Cuts a TCP byte stream into length-prefixed frames. Buffers at most one frame, and
 * refuses a length over `sizeMax` as soon as the prefix arrives, before buffering any of
 * it: a peer cannot make this node hold more than `sizeMax` bytes per connection.
 */
export class FrameReader {
  #sizeMax = 0;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(sizeMax: number) {
    this.limit(sizeMax);
  }

  /** Changes the limit for the frames still to come (a connection allows larger frames
   *  once its peer is authenticated). */
  limit(sizeMax: number): void {
    assert(sizeMax >= envelopeSizeMin && sizeMax <= envelopeSizeMaxLimit, `frame size limit ${sizeMax} out of range`);
    this.#sizeMax = sizeMax;
  }

  get bufferedSize(): number {
    return this.#buffered;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** The next whole frame, null when more bytes are needed, "oversized" when the next
   *  frame's announced length is over the limit (the connection must be dropped). */
  next(): Buffer | null | "oversized" {
    if (this.#buffered < framePrefixSize) return null;
    const head = this.#contiguous(framePrefixSize);
    const size = head.readUInt32BE(0);
    if (size > this.#sizeMax) return "oversized";
    if (this.#buffered < framePrefixSize + size) return null;
    const all = this.#contiguous(framePrefixSize + size);
    const rest = all.subarray(framePrefixSize + size);
    this.#chunks = rest.length === 0 ? [] : [rest];
    this.#buffered = rest.length;
    return all.subarray(framePrefixSize, framePrefixSize + size);
  }

  /** Joins the buffered chunks once at least `size` bytes are needed in one piece. */
  #contiguous(size: number): Buffer {
    if (this.#chunks[0]!.length < size) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]!;
  }
}

// ---- Payloads ----

/** Turns a port's messages into JSON values and back. `decode` sees untrusted (if
 *  authenticated) data: it validates the shape and returns null for anything else. A
 *  message that names its own sender must be checked against `from`, the sender the
 *  envelope authenticated. */
export interface PayloadCodec<Message> {
  encode(message: Message): unknown;
  decode(value: unknown, from: NodeId): Message | null;
}
