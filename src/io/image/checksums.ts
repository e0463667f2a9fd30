// CRC-32 (PNG chunks, ISO 3309 / ITU-T V.42 polynomial) and Adler-32 (zlib streams, RFC 1950).

let crcTable: Uint32Array | null = null;

function table(): Uint32Array {
  if (crcTable) return crcTable;
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return (crcTable = t);
}

/** CRC-32 of bytes[start, end). */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t = table();
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Adler-32 of bytes[start, end). Sums are reduced every 5552 bytes, the most that cannot overflow 2^32. */
export function adler32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let a = 1,
    b = 0;
  let i = start;
  while (i < end) {
    const stop = Math.min(end, i + 5552);
    for (; i < stop; i++) {
      a += bytes[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}
