/**
 * Keep-alive connection pools to the upstream, one per credential: one for each configured client
 * pair (by CN) and one with no client certificate for token and anonymous callers.
 */
import { type Identity, pairIdentity } from "../identity/identity.ts";
import { type PoolOptions, UpstreamPool } from "./pool.ts";

export interface PairMaterial {
  cn: string;
  /** The certificate's O values (security: a local cert must prove the same CN and groups). */
  groups: string[];
  certPem: string;
  keyPem: string;
  serial: string;
}

const POOL_OPTIONS = { maxSockets: 256, maxIdle: 32, idleMs: 30_000 };

export class UpstreamAgents {
  #ca: string;
  #pairs = new Map<string, PairMaterial>();
  #agents = new Map<string, UpstreamPool>();
  #anonymous: UpstreamPool;

  #protocol: Pick<PoolOptions, "http2" | "h2" | "timers">;

  /** `protocol`: HTTP/2 use (default off) and its tuning, and the server's timer service, the same for every pool. */
  constructor(
    caPem: string,
    pairs: PairMaterial[] = [],
    protocol: Pick<PoolOptions, "http2" | "h2" | "timers"> = {},
  ) {
    this.#ca = caPem;
    this.#protocol = protocol;
    this.#anonymous = this.#make();
    for (const p of pairs) this.setPair(p.cn, p);
  }

  #make(pair?: PairMaterial): UpstreamPool {
    return new UpstreamPool({
      ...POOL_OPTIONS,
      ...this.#protocol,
      ca: this.#ca,
      cert: pair?.certPem,
      key: pair?.keyPem,
    });
  }

  /** True when a configured pair asserts exactly this identity: the same CN and set of groups. */
  hasPair(cn: string, groups: string[]): boolean {
    const pair = this.#pairs.get(cn);
    return !!pair && pairIdentity(pair.cn, pair.groups) === pairIdentity(cn, groups);
  }

  pair(cn: string): PairMaterial | undefined {
    return this.#pairs.get(cn);
  }

  cns(): string[] {
    return [...this.#pairs.keys()];
  }

  /**
   * Installs, replaces or (with undefined) removes a pair. New requests use the new pool at once;
   * the old pool is returned for the caller to retire (see retirePool), or destroyed when
   * `retire` is false.
   */
  setPair(cn: string, pair: PairMaterial | undefined, retire = false): UpstreamPool | undefined {
    const old = this.#agents.get(cn);
    if (pair) {
      this.#pairs.set(cn, pair);
      this.#agents.set(cn, this.#make(pair));
    } else {
      this.#pairs.delete(cn);
      this.#agents.delete(cn);
    }
    if (!retire) old?.destroy();
    return old;
  }

  /** A new cluster CA: every pool is rebuilt. */
  setCa(caPem: string): void {
    this.#ca = caPem;
    const old = [this.#anonymous, ...this.#agents.values()];
    this.#anonymous = this.#make();
    for (const [cn, pair] of this.#pairs) this.#agents.set(cn, this.#make(pair));
    for (const a of old) a.destroy();
  }

  agentFor(id: Identity): UpstreamPool {
    if (id.kind === "cert") return this.#agents.get(id.cn) ?? this.#anonymous;
    return this.#anonymous;
  }

  /** The pool used by probes: no client certificate. */
  anonymous(): UpstreamPool {
    return this.#anonymous;
  }

  destroy(): void {
    this.#anonymous.destroy();
    for (const a of this.#agents.values()) a.destroy();
  }
}
