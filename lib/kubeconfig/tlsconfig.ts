/**
 * The tls-config file lite-apiserver reads with `--tls-config-file`: a JSON array of client
 * certificate pairs, `[{"cert": PATH, "key": PATH}]`, one per identity it may present upstream.
 */
import { ConfigError } from "../config/errors.ts";

/** One client identity: certificate and key paths (the same path when one PEM file holds both). */
export interface TlsPair {
  cert: string;
  key: string;
}

/** Parses tls-config text (null = file absent → empty list), with a one-line error when malformed. */
export function parseTlsConfig(path: string, text: string | null): TlsPair[] {
  if (text === null || text.trim() === "") return [];
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${path} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!Array.isArray(data)) {
    throw new ConfigError(`${path} must hold a JSON array of {"cert": ..., "key": ...}`);
  }
  return data.map((e, i) => {
    if (typeof e !== "object" || e === null || typeof e.cert !== "string" || typeof e.key !== "string") {
      throw new ConfigError(`${path}: entry ${i} must be {"cert": PATH, "key": PATH}`);
    }
    return { cert: e.cert, key: e.key };
  });
}

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
