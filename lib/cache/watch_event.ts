/** One event of a watch stream as the cache records it (its own module: cache.ts and initial_events.ts both use it). */
export interface WatchEvent {
  type: string;
  object: unknown;
  /** The object's JSON exactly as received, when known (saves serialising it again). */
  raw?: Uint8Array;
  /** `namespace/name` and resourceVersion, when read without parsing the object. */
  itemKey?: string;
  resourceVersion?: string;
}
