/**
 * Registering a client pair in the tls-config file (`--tls-config-file`). The file is read with
 * `serve`'s own parser (lib/certs), so what `redirect` writes is read the same way by `serve`.
 */
import type { PairEntry } from "../certs/mod.ts";

/** One client identity: certificate and key paths (the same path when one PEM file holds both). */
export type TlsPair = PairEntry;

/** The result of registering a pair: the new file text (null = unchanged) and any entries it replaced. */
export interface Registration {
  text: string | null;
  replaced: TlsPair[];
}

/**
 * Registers `pair`: unchanged when already present; otherwise appended, replacing entries for the
 * same identity (`sameIdentity`), because lite-apiserver refuses a tls-config with two pairs for
 * one CN.
 */
export function registerPair(
  pairs: TlsPair[],
  pair: TlsPair,
  sameIdentity: (p: TlsPair) => boolean,
): Registration {
  if (pairs.some((p) => p.cert === pair.cert && p.key === pair.key)) return { text: null, replaced: [] };
  const replaced = pairs.filter(sameIdentity);
  const kept = pairs.filter((p) => !replaced.includes(p));
  return { text: JSON.stringify([...kept, pair], null, 2) + "\n", replaced };
}
