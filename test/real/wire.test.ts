// The envelope of every node-to-node message (drivers/real/wire.ts): encoding and
// authentication; every way a message is refused (wrong key, forged or changed bytes,
// truncated, oversized, another version); replay windows that pass reordered but fresh
// sequence numbers once; incarnations that make a restarted sender's old messages stale;
// the rate-limited log; stream framing; and properties: decoding never throws on any
// bytes, and any changed byte of a signed envelope is refused.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AssertionError } from "../../core/assert.ts";
import type { LogEntry } from "../../core/types.ts";
import {
  Attachment,
  authenticate,
  clusterKeyProblem,
  encodeEnvelope,
  envelopeSizeMin,
  frame,
  FrameReader,
  Freshness,
  encodeFrame,
  frameMacSize,
  macSize,
  wireVersion,
  parseEnvelope,
  parsePayload,
  RateLimitedLog,
  rejectLog,
  replayWindowSize,
  ReplayWindow,
  WireKey,
  type EnvelopeFields,
  type EnvelopeKey,
} from "../../drivers/real/wire.ts";
import { otherKey, testKey } from "./loopback.ts";

const sizeMax = 32 * 1024;
const fields: EnvelopeFields = { kind: "datagram", incarnation: 1_700_000_000_000, sequence: 42, sentAtUnixMs: 1_700_000_000_123, from: "n1", to: "n2", channel: "heartbeat", ring: "lan" };
const payload = { kind: "farm-heartbeat", members: ["n1", "n2"], text: "héllo ✓" };

function encoded(overrides: Partial<EnvelopeFields> = {}, body: unknown = payload, key = testKey): Buffer {
  const bytes = encodeEnvelope({ ...fields, ...overrides }, body, key, sizeMax);
  expect(bytes).not.toBeNull();
  return bytes!;
}

/** What a receiver concludes about `bytes`: the first reason it refuses them, or "ok". */
function verdict(bytes: Uint8Array, key = testKey): string {
  const parsed = parseEnvelope(bytes, sizeMax);
  if (!parsed.ok) return parsed.reason;
  const authentication = authenticate(parsed.envelope, key);
  if (authentication !== null) return authentication;
  return parsePayload(parsed.envelope) === undefined ? "bad-payload" : "ok";
}

describe("envelopes", () => {
  it("carry every field and the payload through encoding", () => {
    const parsed = parseEnvelope(encoded(), sizeMax);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const { kind, incarnation, sequence, sentAtUnixMs, from, to, channel, ring } = parsed.envelope;
    expect({ kind, incarnation, sequence, sentAtUnixMs, from, to, channel, ring }).toEqual(fields);
    expect(authenticate(parsed.envelope, testKey)).toBeNull();
    expect(parsePayload(parsed.envelope)).toEqual(payload);
  });

  it("carry the largest safe integers and names of the largest size", () => {
    const name = "é".repeat(32);
    const big = { incarnation: Number.MAX_SAFE_INTEGER, sequence: Number.MAX_SAFE_INTEGER, from: name, to: name, ring: "r".repeat(64) };
    const parsed = parseEnvelope(encoded(big), sizeMax);
    expect(parsed.ok && parsed.envelope).toMatchObject(big);
  });

  it("are refused under another cluster's key as wrong-cluster", () => {
    expect(verdict(encoded({}, payload, otherKey))).toBe("wrong-cluster");
  });

  it("are refused as bad-mac when the MAC, a header field or the payload was changed", () => {
    const original = encoded();
    const forgedMac = Buffer.from(original);
    forgedMac[forgedMac.length - 1]! ^= 0x01;
    expect(verdict(forgedMac)).toBe("bad-mac");
    const changedSequence = Buffer.from(original);
    changedSequence[4 + 8 + 8 + 7]! ^= 0x01;
    expect(verdict(changedSequence)).toBe("bad-mac");
    const changedPayload = Buffer.from(original);
    changedPayload[original.length - 40]! ^= 0x20;
    expect(verdict(changedPayload)).toBe("bad-mac");
  });

  it("made with a key of the same id but other bytes are refused as bad-mac (a forger who knows the id)", () => {
    const forger = new WireKey(Buffer.from("a forger's guess at the key......"), testKey.id);
    expect(verdict(encoded({}, payload, forger))).toBe("bad-mac");
  });

  it("refuse garbage, truncation, another version and oversize before any authentication", () => {
    const original = encoded();
    expect(verdict(Buffer.from("GET / HTTP/1.1\r\n\r\n"))).toBe("unparsable");
    expect(verdict(Buffer.alloc(0))).toBe("unparsable");
    expect(verdict(original.subarray(0, original.length - 1))).toBe("unparsable");
    expect(verdict(Buffer.concat([original, Buffer.from([0])]))).toBe("unparsable");
    const badMagic = Buffer.from(original);
    badMagic[0] = 0x00;
    expect(verdict(badMagic)).toBe("unparsable");
    for (const version of [wireVersion - 1, wireVersion + 1]) {
      const other = Buffer.from(original);
      other[2] = version;
      expect(verdict(other)).toBe("unsupported-version");
    }
    const unknownKind = Buffer.from(original);
    unknownKind[3] = 99;
    expect(verdict(unknownKind)).toBe("unparsable");
    expect(parseEnvelope(Buffer.alloc(sizeMax + 1), sizeMax)).toMatchObject({ ok: false, reason: "oversized" });
  });

  it("encode to null, not a crash, when the message is over the size limit", () => {
    expect(encodeEnvelope(fields, "x".repeat(sizeMax), testKey, sizeMax)).toBeNull();
  });

  it("refuse to encode fields no receiver could accept (a programmer error)", () => {
    const bad: Partial<EnvelopeFields>[] = [{ from: "" }, { to: "" }, { from: "n".repeat(65) }, { sequence: -1 }, { incarnation: 1.5 }, { sequence: 2 ** 53 }, { channel: "c".repeat(33) }];
    for (const each of bad) expect(() => encodeEnvelope({ ...fields, ...each }, payload, testKey, sizeMax)).toThrow(AssertionError);
  });

  it("refuse numbers over 2^53 on the wire as unparsable", () => {
    const bytes = encoded();
    bytes.writeUInt32BE(0xffff_ffff, 4 + 8);
    expect(verdict(bytes)).toBe("unparsable");
  });
});

describe("attachments: bytes beside the JSON", () => {
  const open = (bytes: Buffer): unknown => {
    const parsed = parseEnvelope(bytes, sizeMax);
    if (!parsed.ok) throw new Error(parsed.detail);
    expect(authenticate(parsed.envelope, testKey)).toBeNull();
    return parsePayload(parsed.envelope);
  };

  it("travel unencoded after a NUL and come back in place, as plain Uint8Arrays over the frame's bytes", () => {
    const one = new Uint8Array(3000).fill(7);
    const two = new Uint8Array([0, 1, 2, 255]);
    const bytes = encoded({}, { kind: "blocks", path: "a\u0000b", blocks: [[0, new Attachment(one)], [9, new Attachment(two)]] });
    // The bytes, not base64: the envelope is barely larger than them.
    expect(bytes.length).toBeLessThan(envelopeSizeMin + 200 + one.length + two.length);
    const value = open(bytes) as { path: string; blocks: [number, Uint8Array][] };
    expect(value.path).toBe("a\u0000b");
    expect(value.blocks.map(([index, data]) => [index, [...data]])).toEqual([[0, [...one]], [9, [...two]]]);
    expect(Buffer.isBuffer(value.blocks[0]![1])).toBe(false);
    // No allocation per attachment, nor for the message's: views of the frame.
    expect(value.blocks[0]![1].buffer).toBe(bytes.buffer);
    expect(value.blocks[1]![1].buffer).toBe(bytes.buffer);
  });

  it("leave a payload without them as it was (no NUL), and are base64 in plain JSON", () => {
    const bytes = encoded({}, payload);
    expect(bytes.includes(0, envelopeSizeMin)).toBe(false);
    expect(JSON.stringify({ data: new Attachment(new Uint8Array([1, 2, 3])) })).toBe(`{"data":"AQID"}`);
  });

  it("an attachment named __proto__ stays an own property", () => {
    const body = JSON.parse(`{"__proto__":0}`) as Record<string, unknown>;
    Object.defineProperty(body, "__proto__", { value: new Attachment(new Uint8Array([5])), enumerable: true });
    const value = open(encoded({}, body)) as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(value, "__proto__")?.value).toBeInstanceOf(Uint8Array);
  });

  it("a reference outside the attached bytes is not a payload", () => {
    const bytes = encoded({}, { data: new Attachment(new Uint8Array(4)) });
    const parsed = parseEnvelope(bytes, sizeMax);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const text = parsed.envelope.payload.toString("latin1").replace(`"$b":[0,4]`, `"$b":[2,4]`);
    expect(parsePayload({ ...parsed.envelope, payload: Buffer.from(text, "latin1") })).toBeUndefined();
  });
});

describe("stream frames", () => {
  it("are made in one buffer, the same bytes as an envelope framed afterwards", () => {
    const body = { kind: "blocks", blocks: [[0, new Attachment(new Uint8Array(5000).fill(3))]] };
    const made = encodeFrame(fields, body, testKey, sizeMax);
    expect(made).toEqual(frame(encoded({}, body)));
    expect(encodeFrame(fields, { data: new Attachment(new Uint8Array(sizeMax)) }, testKey, sizeMax)).toBeNull();
  });
});

describe("frame keys: a connection's frames under AES-128-GMAC", () => {
  const session = testKey.derive("tandem stream session v1", [Buffer.from("n1"), Buffer.from("n2")]);
  const { connector, acceptor } = session.frameKeys();
  const frameFields: EnvelopeFields = { ...fields, kind: "frame", channel: "control", ring: "" };
  const sealed = (key = connector, sequence = 42) => encodeEnvelope({ ...frameFields, sequence }, payload, key, sizeMax)!;
  const check = (bytes: Buffer, key: EnvelopeKey = connector): string => {
    const parsed = parseEnvelope(bytes, sizeMax);
    return parsed.ok ? (authenticate(parsed.envelope, key) ?? "ok") : parsed.reason;
  };

  it("open under the direction's key only: a frame sent back to its sender is refused", () => {
    expect(check(sealed())).toBe("ok");
    expect(check(sealed(), acceptor)).toBe("bad-mac");
    expect(check(sealed(acceptor), acceptor)).toBe("ok");
    // Another connection's session: refused.
    const other = testKey.derive("tandem stream session v1", [Buffer.from("n1"), Buffer.from("n3")]).frameKeys().connector;
    expect(check(sealed(), other)).toBe("bad-mac");
  });

  it("carry a 16-byte tag bound to the sequence number (its nonce)", () => {
    const bytes = sealed();
    expect(bytes.length).toBe(encoded({ ...frameFields, kind: "datagram" }).length - macSize + frameMacSize);
    const parsed = parseEnvelope(bytes, sizeMax);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(connector.verify(parsed.envelope.signed, parsed.envelope.mac, 42)).toBe(true);
    expect(connector.verify(parsed.envelope.signed, parsed.envelope.mac, 43)).toBe(false);
    // A flipped byte anywhere: refused.
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 20]! ^= 1;
    expect(check(flipped)).toBe("bad-mac");
  });

  it("are never mixed up with the cluster key's MAC", () => {
    expect(() => encodeEnvelope(frameFields, payload, testKey, sizeMax)).toThrow(AssertionError);
    expect(() => encodeEnvelope({ ...frameFields, kind: "hello" }, payload, connector, sizeMax)).toThrow(AssertionError);
    expect(check(sealed(), testKey)).toBe("bad-mac");
  });
});

describe("keys", () => {
  it("name the cluster key by an id that derived keys keep, with different MACs", () => {
    const session = testKey.derive("tandem stream session v1", [Buffer.from("n1"), Buffer.from("n2")]);
    expect(session.id.equals(testKey.id)).toBe(true);
    expect(session.mac(Buffer.from("x")).equals(testKey.mac(Buffer.from("x")))).toBe(false);
    expect(testKey.id.equals(otherKey.id)).toBe(false);
  });

  it("separate derivation parts, so that moving bytes between parts changes the key", () => {
    const one = testKey.derive("label", [Buffer.from("ab"), Buffer.from("c")]);
    const two = testKey.derive("label", [Buffer.from("a"), Buffer.from("bc")]);
    expect(one.mac(Buffer.from("x")).equals(two.mac(Buffer.from("x")))).toBe(false);
  });

  it("are at least 16 bytes; the service is told what is wrong with a weak key file", () => {
    expect(() => new WireKey(Buffer.alloc(15, 7))).toThrow(AssertionError);
    expect(clusterKeyProblem(Buffer.alloc(8, 1))).toMatch(/at least 16.*head -c 32 \/dev\/urandom/);
    expect(clusterKeyProblem(Buffer.alloc(32, 0))).toMatch(/one byte repeated/);
    expect(clusterKeyProblem(Buffer.from("tandem test cluster key, 32 byte"))).toBeNull();
  });
});

describe("ReplayWindow", () => {
  it("passes new sequence numbers, refuses repeats", () => {
    const window = new ReplayWindow();
    for (const sequence of [1, 2, 3]) {
      expect(window.check(sequence)).toBeNull();
      window.accept(sequence);
    }
    expect(window.check(2)).toBe("replayed");
    expect(window.check(3)).toBe("replayed");
  });

  it("passes reordered but fresh sequence numbers, once each", () => {
    const window = new ReplayWindow();
    for (const sequence of [10, 7, 9, 8]) {
      expect(window.check(sequence)).toBeNull();
      window.accept(sequence);
    }
    for (const sequence of [7, 8, 9, 10]) expect(window.check(sequence)).toBe("replayed");
    expect(window.check(6)).toBeNull();
  });

  it("refuses what falls behind the window as too old", () => {
    const window = new ReplayWindow();
    window.accept(1);
    window.accept(1 + replayWindowSize);
    expect(window.check(1)).toBe("too-old");
    expect(window.check(2)).toBeNull();
  });

  it("forgets nothing it should remember across a big jump, and remembers nothing stale", () => {
    const window = new ReplayWindow();
    window.accept(5);
    window.accept(1_000_000);
    expect(window.check(999_999)).toBeNull();
    expect(window.check(1_000_000)).toBe("replayed");
    expect(window.check(1_000_000 - replayWindowSize + 1)).toBeNull();
  });

  it("agrees with a model that remembers every accepted number (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 * replayWindowSize }), { maxLength: 300 }), (sequences) => {
        const window = new ReplayWindow();
        const accepted = new Set<number>();
        let newest = -1;
        for (const sequence of sequences) {
          const expected = sequence > newest ? null : newest - sequence >= replayWindowSize ? "too-old" : accepted.has(sequence) ? "replayed" : null;
          expect(window.check(sequence)).toBe(expected);
          if (expected !== null) continue;
          window.accept(sequence);
          accepted.add(sequence);
          newest = Math.max(newest, sequence);
        }
      }),
    );
  });
});

describe("Freshness", () => {
  it("refuses an older incarnation once a newer one was accepted: a restarted sender's old messages are stale", () => {
    const freshness = new Freshness();
    freshness.accept("n1", "lan", 100, 7);
    expect(freshness.check("n1", "lan", 100, 7)).toBe("replayed");
    freshness.accept("n1", "lan", 200, 1);
    expect(freshness.check("n1", "lan", 100, 8)).toBe("stale-incarnation");
    expect(freshness.check("n1", "private", 100, 1)).toBe("stale-incarnation");
    expect(freshness.incarnationOf("n1")).toBe(200);
  });

  it("starts a new incarnation's windows afresh and keeps lanes and senders apart", () => {
    const freshness = new Freshness();
    freshness.accept("n1", "lan", 1, 5);
    expect(freshness.check("n1", "lan", 2, 5)).toBeNull();
    expect(freshness.check("n1", "private", 1, 5)).toBeNull();
    expect(freshness.check("n2", "lan", 1, 5)).toBeNull();
  });

  it("takes incarnations learned elsewhere (a stream handshake) into account", () => {
    const freshness = new Freshness();
    freshness.noteIncarnation("n1", 9);
    expect(freshness.check("n1", "lan", 8, 1)).toBe("stale-incarnation");
    freshness.noteIncarnation("n1", 3);
    expect(freshness.incarnationOf("n1")).toBe(9);
  });
});

describe("RateLimitedLog", () => {
  it("logs the first of each reason, then at most one line per interval with the count suppressed", () => {
    const lines: LogEntry[] = [];
    let nowMs = 0;
    const log = rejectLog((entry) => lines.push(entry), () => nowMs, 1_000);
    for (let index = 0; index < 50; index++) log.note("bad-mac", { source: "10.0.0.9:1" });
    log.note("unparsable", { source: "10.0.0.9:1" });
    expect(lines.map((line) => [line.fields.reason, line.fields.suppressed, line.fields.total])).toEqual([["bad-mac", 0, 1], ["unparsable", 0, 1]]);
    nowMs = 999;
    log.note("bad-mac", {});
    expect(lines).toHaveLength(2);
    nowMs = 1_000;
    log.note("bad-mac", {});
    expect(lines[2]).toMatchObject({ level: "warn", event: "wire.rejected", fields: { reason: "bad-mac", suppressed: 50, total: 52 } });
    expect(log.counts["bad-mac"]).toBe(52);
  });

  it("logs under the event it is given", () => {
    const lines: LogEntry[] = [];
    new RateLimitedLog("stream.send-dropped", ["overflow"] as const, (entry) => lines.push(entry), () => 0).note("overflow", { to: "n2" });
    expect(lines).toEqual([{ level: "warn", event: "stream.send-dropped", fields: { reason: "overflow", to: "n2", suppressed: 0, total: 1 } }]);
  });
});

describe("FrameReader", () => {
  const frames = [encoded({ sequence: 1 }), encoded({ sequence: 2 }, "x".repeat(3_000)), encoded({ sequence: 3 })];
  const stream = Buffer.concat(frames.map(frame));

  const readAll = (reader: FrameReader, chunks: Buffer[]): (Buffer | "oversized")[] => {
    const out: (Buffer | "oversized")[] = [];
    for (const chunk of chunks) {
      reader.push(chunk);
      for (let next = reader.next(); next !== null; next = next === "oversized" ? null : reader.next()) out.push(next);
    }
    return out;
  };

  it("cuts frames out of a stream however it is chunked", () => {
    expect(readAll(new FrameReader(sizeMax), [stream])).toEqual(frames);
    expect(readAll(new FrameReader(sizeMax), [...stream].map((byte) => Buffer.from([byte])))).toEqual(frames);
    expect(readAll(new FrameReader(sizeMax), [stream.subarray(0, 2), stream.subarray(2, 4000), stream.subarray(4000)])).toEqual(frames);
  });

  it("refuses a frame over the limit as soon as its length prefix arrives", () => {
    const reader = new FrameReader(1_000);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(1_001);
    reader.push(prefix);
    expect(reader.next()).toBe("oversized");
    expect(reader.bufferedSize).toBe(4);
  });

  it("applies a changed limit to the frames still to come", () => {
    const reader = new FrameReader(envelopeSizeMin + 100);
    reader.push(frame(frames[1]!));
    expect(reader.next()).toBe("oversized");
    reader.limit(sizeMax);
    expect(reader.next()).toEqual(frames[1]);
  });
});

describe("decoding never throws (properties)", () => {
  it("on any bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2_000 }), (bytes) => {
        expect(["unparsable", "oversized", "unsupported-version", "wrong-cluster", "bad-mac", "bad-payload", "ok"]).toContain(verdict(bytes));
      }),
      { numRuns: 2_000 },
    );
  });

  it("on bytes that start like an envelope (magic, version, our key id)", () => {
    const head = encoded().subarray(0, 12);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), (tail) => {
        expect(verdict(Buffer.concat([head, tail]))).not.toBe("ok");
      }),
      { numRuns: 2_000 },
    );
  });

  it("refuses every envelope with any byte changed", () => {
    const original = encoded();
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(original.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (changes) => {
        const changed = Buffer.from(original);
        for (const [index, delta] of changes) changed[index] = (changed[index]! + delta) & 0xff;
        fc.pre(!changed.equals(original));
        expect(verdict(changed)).not.toBe("ok");
      }),
      { numRuns: 2_000 },
    );
  });

  it("framing never throws on any chunks", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), (chunks) => {
        const reader = new FrameReader(envelopeSizeMin + 1_000);
        for (const chunk of chunks) {
          reader.push(Buffer.from(chunk));
          for (let next = reader.next(); next !== null && next !== "oversized"; next = reader.next()) verdict(next);
        }
      }),
    );
  });
});
