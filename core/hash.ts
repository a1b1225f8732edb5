// Integer hashing shared by every node. A pure module: it performs no I/O.
//
// Every node must compute the same bucket owners from the same member set, possibly on
// different CPUs and Node versions, so ownership uses 32-bit integer arithmetic only
// (Math.imul and shifts), never floating-point functions such as Math.log whose last bit
// is not specified.

/** murmur3's finaliser: avalanches all 32 bits of `h`. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Combines two 32-bit values into one well-mixed 32-bit value. */
export function combine32(a: number, b: number): number {
  return mix32((Math.imul(a ^ 0x9e3779b9, 0x27d4eb2d) + (b >>> 0)) >>> 0);
}

/** FNV-1a over the UTF-16 code units of `text`, finalised with mix32. */
export function hashString32(text: string): number {
  let h = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    h ^= text.charCodeAt(index);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h >>> 0);
}
