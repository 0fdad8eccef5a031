/**
 * The listener's own serving certificate and key (`--tls-cert-file`, `--tls-private-key-file`) and the
 * cluster CA bundle (`--ca-file`), loaded strictly at startup and reloaded on change or SIGHUP.
 */
import { ConfigError, errMessage } from "../config/errors.ts";
import { log } from "../log.ts";
import { Emitter } from "../events.ts";
import { readText } from "../files/read_text.ts";
import {
  certBlocks,
  daysUntil,
  keyBlock,
  keyMatches,
  parseBundle,
  parseCert,
  parseKey,
  validity,
} from "./pem.ts";
import { EXPIRY_WARNING_DAYS } from "./client_pairs.ts";
import { Reloader } from "./reloader.ts";

/** What the listener's secure context and the upstream agents need. */
export interface ServingMaterial {
  /** Serving certificate followed by its chain, if the file has one. */
  certPem: string;
  keyPem: string;
  /** CA bundle (one or more certificates). */
  caPem: string;
}

interface ServingTexts {
  cert: string;
  key: string;
  ca: string;
}

async function readTexts(certFile: string, keyFile: string, caFile: string): Promise<ServingTexts> {
  const cert = await readText(certFile, "serving certificate file (--tls-cert-file)");
  const key = keyFile === certFile
    ? cert
    : await readText(keyFile, "serving key file (--tls-private-key-file)");
  const ca = await readText(caFile, "CA file (--ca-file)");
  return { cert, key, ca };
}

/** Checks serving material; throws ConfigError. Returns a warning line for a cert near or past expiry. */
function checkServing(
  t: ServingTexts,
  certFile: string,
  keyFile: string,
  caFile: string,
): { material: ServingMaterial; warning?: string; notAfter: Date } {
  const certs = certBlocks(t.cert);
  if (certs.length === 0) {
    throw new ConfigError(`serving certificate file ${certFile} has no PEM certificate`);
  }
  const kb = keyBlock(t.key);
  if (!kb) throw new ConfigError(`serving key file ${keyFile} has no PEM private key`);
  let info, key;
  try {
    info = parseCert(certs[0]);
  } catch (e) {
    throw new ConfigError(`serving certificate file ${certFile}: ${errMessage(e)}`);
  }
  try {
    key = parseKey(kb);
  } catch (e) {
    throw new ConfigError(`serving key file ${keyFile}: ${errMessage(e)}`);
  }
  if (!keyMatches(info.x509, key)) {
    throw new ConfigError(`serving key ${keyFile} does not match serving certificate ${certFile}`);
  }
  try {
    parseBundle(t.ca);
  } catch (e) {
    throw new ConfigError(`CA file ${caFile}: ${errMessage(e)}`);
  }
  const v = validity(info);
  const days = daysUntil(info.notAfter);
  const warning = v === "expired"
    ? `serving certificate ${certFile} expired at ${info.notAfter.toISOString()}`
    : v === "not-yet-valid"
    ? `serving certificate ${certFile} is not valid until ${info.notBefore.toISOString()}`
    : days < EXPIRY_WARNING_DAYS
    ? `serving certificate ${certFile} expires in ${days} day(s) at ${info.notAfter.toISOString()}`
    : undefined;
  return {
    material: { certPem: certs.join(""), keyPem: kb.text, caPem: t.ca },
    warning,
    notAfter: info.notAfter,
  };
}

/**
 * Startup validation: cert and key readable, matching, CA bundle parseable. Throws ConfigError with one
 * line naming the file. An expired serving certificate is only warned about (clients will say so).
 */
export async function loadServingMaterial(
  certFile: string,
  keyFile: string,
  caFile: string,
): Promise<ServingMaterial> {
  const r = checkServing(await readTexts(certFile, keyFile, caFile), certFile, keyFile, caFile);
  if (r.warning) log.warn(r.warning);
  return r.material;
}

export interface ServingWatcherOptions {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** Safety-net re-read period. Default 5 min. */
  intervalMs?: number;
  /** Delay between a file event and the re-read. Default 100 ms. */
  debounceMs?: number;
}

/** Reloads serving material on file change, on reloadNow() (SIGHUP) and periodically. */
export class ServingWatcher {
  readonly #opts: Required<ServingWatcherOptions>;
  #current: ServingMaterial | undefined;
  /** Raw contents of the last successful check: unchanged files are not parsed again. */
  #texts: ServingTexts | undefined;
  #lastProblem: string | undefined;
  #lastWarning: string | undefined;
  #changes = new Emitter<{ change: [m: ServingMaterial] }>();
  #reloader: Reloader;

  constructor(opts: ServingWatcherOptions) {
    this.#opts = { intervalMs: 5 * 60_000, debounceMs: 100, ...opts };
    this.#reloader = new Reloader("serving certificate", () => this.#reload(), this.#opts.debounceMs);
  }

  /** Starts watching with the material loaded at startup; resolves once the watches are in place. */
  async start(initial: ServingMaterial): Promise<void> {
    this.#current = initial;
    await this.reloadNow();
  }

  /** The material in service. */
  current(): ServingMaterial | undefined {
    return this.#current;
  }

  /** Called only when the content really changed and the new material validates. */
  onChange(fn: (m: ServingMaterial) => void): void {
    this.#changes.on("change", fn);
  }

  /** Re-reads the files now (serve calls this on SIGHUP). */
  reloadNow(): Promise<void> {
    return this.#reloader.now();
  }

  /** Stops watches and timers; resolves when a reload in flight has finished. */
  close(): Promise<void> {
    return this.#reloader.close();
  }

  async #reload() {
    const { certFile, keyFile, caFile } = this.#opts;
    await this.#reloader.watch([certFile, keyFile, caFile]);
    if (this.#reloader.closed) return;
    let problem: string | undefined;
    try {
      const t = await readTexts(certFile, keyFile, caFile);
      const prev = this.#texts;
      if (!prev || prev.cert !== t.cert || prev.key !== t.key || prev.ca !== t.ca) {
        const r = checkServing(t, certFile, keyFile, caFile);
        this.#texts = t;
        if (r.warning !== this.#lastWarning && r.warning) log.warn(r.warning);
        this.#lastWarning = r.warning;
        const cur = this.#current;
        const m = r.material;
        if (!cur || cur.certPem !== m.certPem || cur.keyPem !== m.keyPem || cur.caPem !== m.caPem) {
          this.#current = m;
          log.info("serving certificate reloaded", { file: certFile, notAfter: r.notAfter.toISOString() });
          if (!this.#reloader.closed) this.#emit(m);
        }
      }
    } catch (e) {
      problem = errMessage(e);
    }
    if (problem !== this.#lastProblem) {
      if (problem) log.warn(`${problem}; keeping the serving certificate in service until fixed`);
      this.#lastProblem = problem;
    }
    this.#arm(problem !== undefined);
  }

  #emit(m: ServingMaterial) {
    this.#changes.emit("change", m);
  }

  #arm(troubled: boolean) {
    // While broken, retry quickly so a fixed file is picked up even if its event was missed.
    this.#reloader.after(troubled ? Math.min(1_000, this.#opts.intervalMs) : this.#opts.intervalMs);
  }
}
