/**
 * What the server does when something changes: the online/offline, client pair and serving
 * certificate events, carried on one typed emitter, and the policy that answers each, by name.
 */
import { Emitter } from "./events.ts";
import { log } from "./log.ts";
import type { ProxyMetrics } from "./admin/metrics.ts";
import type { ClientPair, ServingMaterial } from "./certs/mod.ts";
import type { Listener } from "./listener/https_listener.ts";
import type { HeldWatches } from "./offline/held_watches.ts";
import { abandonInFlight, type InFlightSet, retirePool } from "./proxy/deadlines.ts";
import type { Router } from "./router.ts";
import type { UpstreamAgents } from "./upstream/agents.ts";

export type ServerEvents = {
  /** The cloud answers again. */
  online: [];
  /** The health checks failed: the cloud is unreachable. */
  offline: [];
  /** A client pair was added, replaced (rotation) or removed (undefined). */
  pair: [cn: string, pair: ClientPair | undefined];
  /** New serving material; `caChanged` when the cluster CA itself changed. */
  serving: [material: ServingMaterial, caChanged: boolean];
};

export function serverEvents(): Emitter<ServerEvents> {
  return new Emitter<ServerEvents>();
}

/** Counts each transition for /metrics. */
export function countTransitions(events: Emitter<ServerEvents>, metrics: ProxyMetrics): void {
  events.on("online", () => metrics.transitions.inc({ state: "online" }));
  events.on("offline", () => metrics.transitions.inc({ state: "offline" }));
}

/** Online again: held watches continue from the cloud (or end, so their clients relist). */
export function handHeldWatchesBack(
  events: Emitter<ServerEvents>,
  watches: HeldWatches,
  router: Router,
): void {
  events.on("online", () => {
    const held = watches.count;
    const resumed = watches.cloudBack(router.resumeWatch);
    if (held) log.info("held watches handed back to the cloud", { resumed, ended: held - resumed });
  });
}

/** Offline: reads still waiting on the cloud are answered from the cache, watches carried on. */
export function abandonInFlightOffline(events: Emitter<ServerEvents>, inflight: InFlightSet): void {
  events.on("offline", () => abandonInFlight(inflight));
}

/** A rotated or removed pair: new requests use the new pool at once; the old pool is retired. */
export function swapPairPools(
  events: Emitter<ServerEvents>,
  agents: UpstreamAgents,
  inflight: InFlightSet,
): void {
  events.on("pair", (cn, pair) => {
    const old = agents.setPair(cn, pair, true);
    if (old) retirePool(old, inflight);
    // The watcher logs what it read; this says the new pool is in use.
    if (pair) log.info("client identity loaded: new requests use it", { cn, serial: pair.serial });
  });
}

/**
 * New serving material: new handshakes present it; a new cluster CA is trusted upstream (when it
 * is also the upstream's CA) and client pairs are checked against it again.
 */
export function propagateServing(
  events: Emitter<ServerEvents>,
  deps: {
    listener: Listener;
    agents: UpstreamAgents;
    /** The upstream is verified with the cluster CA (no separate --apiserver-ca-file). */
    upstreamUsesClusterCa: boolean;
    recheckPairs(): void;
  },
): void {
  events.on("serving", (m, caChanged) => {
    deps.listener.setSecureContext(m);
    if (!caChanged) return;
    if (deps.upstreamUsesClusterCa) deps.agents.setCa(m.caPem);
    deps.recheckPairs();
    log.info("cluster CA changed: client pairs checked again");
  });
}
