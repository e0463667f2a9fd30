/**
 * First-fit free-list allocator over a byte range of linear memory. Blocks are 16-byte aligned (one v128)
 * and 16-byte granular; freed blocks coalesce with free neighbours. It only does bookkeeping: the caller
 * grows the memory and reports the new end through `extend`.
 */
export class FreeListAllocator {
  // Free blocks sorted by offset, never adjacent (adjacent blocks are merged).
  private readonly offsets: number[] = [];
  private readonly sizes: number[] = [];
  private end: number;

  constructor(start: number, end: number) {
    const s = align16(start);
    this.end = end;
    if (end > s) this.insertFree(s, end - s);
  }

  /** Rounds a request up to the allocator's granularity. */
  static blockSize(bytes: number): number {
    return Math.max(16, align16(bytes));
  }

  /** Offset of a block of `bytes` (rounded up), or -1 when no free block is large enough. */
  alloc(bytes: number): number {
    const size = FreeListAllocator.blockSize(bytes);
    for (let i = 0; i < this.offsets.length; i++) {
      if (this.sizes[i] >= size) {
        const off = this.offsets[i];
        if (this.sizes[i] === size) {
          this.offsets.splice(i, 1);
          this.sizes.splice(i, 1);
        } else {
          this.offsets[i] += size;
          this.sizes[i] -= size;
        }
        return off;
      }
    }
    return -1;
  }

  /** Returns a block obtained from `alloc(bytes)`. */
  free(offset: number, bytes: number): void {
    this.insertFree(offset, FreeListAllocator.blockSize(bytes));
  }

  /** Bytes a request of `bytes` still lacks at the end of the range (0 if it fits somewhere). */
  shortfall(bytes: number): number {
    const size = FreeListAllocator.blockSize(bytes);
    if (this.sizes.some((s) => s >= size)) return 0;
    const n = this.offsets.length;
    const tail = n > 0 && this.offsets[n - 1] + this.sizes[n - 1] === this.end ? this.sizes[n - 1] : 0;
    return size - tail;
  }

  /** Adds [end, newEnd) to the managed range. */
  extend(newEnd: number): void {
    if (newEnd <= this.end) return;
    const old = this.end;
    this.end = newEnd;
    this.insertFree(old, newEnd - old);
  }

  /** Free bytes in total and the largest free block (for diagnostics and tests). */
  stats(): { free: number; largest: number; blocks: number; end: number } {
    let free = 0;
    let largest = 0;
    for (const s of this.sizes) {
      free += s;
      largest = Math.max(largest, s);
    }
    return { free, largest, blocks: this.sizes.length, end: this.end };
  }

  private insertFree(offset: number, size: number): void {
    // binary search for the first block after `offset`
    let lo = 0;
    let hi = this.offsets.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.offsets[mid] < offset) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo - 1;
    const next = lo;
    if (prev >= 0 && this.offsets[prev] + this.sizes[prev] > offset)
      throw new Error(`double free or overlap at ${offset}`);
    if (next < this.offsets.length && offset + size > this.offsets[next])
      throw new Error(`double free or overlap at ${offset}`);
    const joinPrev = prev >= 0 && this.offsets[prev] + this.sizes[prev] === offset;
    const joinNext = next < this.offsets.length && offset + size === this.offsets[next];
    if (joinPrev && joinNext) {
      this.sizes[prev] += size + this.sizes[next];
      this.offsets.splice(next, 1);
      this.sizes.splice(next, 1);
    } else if (joinPrev) {
      this.sizes[prev] += size;
    } else if (joinNext) {
      this.offsets[next] = offset;
      this.sizes[next] += size;
    } else {
      this.offsets.splice(next, 0, offset);
      this.sizes.splice(next, 0, size);
    }
  }
}

function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}
