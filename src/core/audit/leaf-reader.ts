/** One stored audit event, as read back from the database in leaf order. */
export interface StoredAuditLeaf {
  readonly leafIndex: number;
  /**
   * The canonical bytes as stored, or the stored canonical JSON text (hashed as its UTF-8
   * bytes, without converting it first). Hashed as is when present.
   */
  readonly canonicalBytes?: Uint8Array | string;
  /** The event object; canonicalised when `canonicalBytes` is absent, cross-checked when not. */
  readonly event?: unknown;
  /**
   * The leaf hash stored beside the event: bytes, or its lower-case hex as stored (compared in
   * place; anything but 64 lower-case hex digits is malformed).
   */
  readonly storedLeafHash: Uint8Array | string;
}

/** A stored leaf or a page of them, as a database cursor yields rows. */
export type LeafOrPage = StoredAuditLeaf | readonly StoredAuditLeaf[];
export type LeafSource = AsyncIterable<LeafOrPage> | Iterable<LeafOrPage>;

export const END: unique symbol = Symbol('end of leaves');
export type Pulled = StoredAuditLeaf | typeof END;

/**
 * Pulls leaves one at a time from an iterable of leaves or of pages of leaves, returning a
 * promise only when the source must be awaited: a database cursor that yields pages of rows then
 * costs one await per page, not per event.
 */
export class LeafReader {
  readonly #iterator: AsyncIterator<LeafOrPage> | Iterator<LeafOrPage>;
  readonly #sync: boolean;
  #page: readonly StoredAuditLeaf[] = [];
  #at = 0;
  #done = false;

  constructor(source: LeafSource) {
    this.#sync = !(Symbol.asyncIterator in source);
    this.#iterator =
      Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  next(): Pulled | Promise<Pulled> {
    if (this.#at < this.#page.length) return this.#page[this.#at++]!;
    if (this.#done) return END;
    if (this.#sync) {
      let r = (this.#iterator as Iterator<LeafOrPage>).next();
      while (r.done !== true && Array.isArray(r.value) && r.value.length === 0) {
        r = (this.#iterator as Iterator<LeafOrPage>).next();
      }
      return this.#take(r);
    }
    return this.#fetch();
  }

  async #fetch(): Promise<Pulled> {
    let r = await this.#iterator.next();
    while (r.done !== true && Array.isArray(r.value) && r.value.length === 0) {
      r = await this.#iterator.next();
    }
    return this.#take(r);
  }

  #take(r: IteratorResult<LeafOrPage>): Pulled {
    if (r.done === true) {
      this.#done = true;
      return END;
    }
    if (!Array.isArray(r.value)) return r.value as StoredAuditLeaf;
    this.#page = r.value;
    this.#at = 1;
    return this.#page[0]!;
  }

  /** Lets the source release its cursor when verification stops early. */
  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#iterator.return?.();
  }
}
