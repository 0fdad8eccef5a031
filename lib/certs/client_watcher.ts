/**
 * Keeps the client identities of `--tls-config-file` current while the proxy runs: kubelet bootstraps
 * and rotates its certificate, operators add or remove identities. A pair that stops loading keeps
 * its last good version in service (with a warning) until it is fixed; a node never loses its identity
 * to a half-written file.
 */
import { log } from "../log.ts";
import { Emitter } from "../events.ts";
import {
  type ClientPair,
  duplicateMessage,
  expiryWarning,
  type PairEntry,
  type PairTexts,
  parsePair,
  parseTlsConfig,
  readPairTexts,
  validityProblem,
} from "./client_pairs.ts";
import { readText } from "../files/read_text.ts";
import { errMessage } from "../config/errors.ts";
import { Reloader } from "./reloader.ts";

export interface ClientPairWatcherOptions {
  tlsConfigFile: string;
  /** The current cluster CA bundle; pairs not signed by it are refused. Omit to skip the check. */
  caPem?: () => string;
  /** Re-read period when all is well. Default 30 min. */
  normalIntervalMs?: number;
  /** Re-read period while any pair or the config has a problem. Default 1 s. */
  fastIntervalMs?: number;
  /** Delay between a file event and the re-read. Default 100 ms. */
  debounceMs?: number;
}

/** One configured pair as seen by status pages and metrics. */
export interface PairStatus {
  /** The CN of the pair in service, or "" when none ever loaded. */
  cn: string;
  certFile: string;
  notAfter?: Date;
  serial?: string;
  /** Why the files on disk are not (or no longer) what is in service. */
  problem?: string;
}

type Listener = (cn: string, pair: ClientPair | undefined) => void;

interface EntryState {
  entry: PairEntry;
  /** Contents and CA of the last parse, to skip parsing when nothing changed. */
  texts?: PairTexts;
  ca?: string;
  parsed?: ClientPair;
  parseError?: string;
  /** The last good pair: what this entry contributes to service. */
  pair?: ClientPair;
  problem?: string;
  /** True when the problem left an older pair in service. */
  keptOld?: boolean;
  logged?: string;
}

const DAY_MS = 86_400_000;

const entryKey = (e: PairEntry) => `${e.cert}\0${e.key}`;

export class ClientPairWatcher {
  readonly #opts: Required<Omit<ClientPairWatcherOptions, "caPem">> & Pick<ClientPairWatcherOptions, "caPem">;
  #entries: PairEntry[] = [];
  #configText: string | undefined;
  #configProblem: string | undefined;
  #configLogged: string | undefined;
  #states = new Map<string, EntryState>();
  #current = new Map<string, ClientPair>();
  #changes = new Emitter<{ change: [cn: string, pair: ClientPair | undefined] }>();
  #expiryWarned = new Map<string, number>();
  #reloader: Reloader;

  constructor(opts: ClientPairWatcherOptions) {
    this.#opts = {
      normalIntervalMs: 30 * 60_000,
      fastIntervalMs: 1_000,
      debounceMs: 100,
      ...opts,
    };
    this.#reloader = new Reloader("client certificate", () => this.#reload(), this.#opts.debounceMs);
  }

  /**
   * Puts the pairs loaded at startup in service and starts watching. The promise resolves once the
   * files are watched and re-read (tests wait on it; callers may ignore it).
   */
  start(initial: ClientPair[]): Promise<void> {
    for (const pair of initial) {
      const entry = { cert: pair.certFile, key: pair.keyFile };
      this.#states.set(entryKey(entry), { entry, pair });
      if (!this.#current.has(pair.cn)) this.#current.set(pair.cn, pair);
    }
    this.#entries = initial.map((p) => ({ cert: p.certFile, key: p.keyFile }));
    return this.reloadNow();
  }

  /** Current good pairs by CN. A copy: safe to keep. */
  pairs(): Map<string, ClientPair> {
    return new Map(this.#current);
  }

  /** Called with (cn, pair) when an identity is added or its certificate changes, (cn, undefined) when removed. */
  onChange(fn: Listener): void {
    this.#changes.on("change", fn);
  }

  /** One row per configured pair (plus one for an unreadable tls-config file). */
  status(): PairStatus[] {
    const rows: PairStatus[] = [];
    if (this.#configProblem) {
      rows.push({ cn: "", certFile: this.#opts.tlsConfigFile, problem: this.#configProblem });
    }
    for (const entry of this.#entries) {
      const s = this.#states.get(entryKey(entry));
      rows.push({
        cn: s?.pair?.cn ?? "",
        certFile: entry.cert,
        notAfter: s?.pair?.notAfter,
        serial: s?.pair?.serial,
        problem: s?.problem,
      });
    }
    return rows;
  }

  /** Re-reads the config and every pair now; concurrent calls share one follow-up run. */
  reloadNow(): Promise<void> {
    return this.#reloader.now();
  }

  /** Stops file watches and timers; resolves when any reload in flight has finished. */
  close(): Promise<void> {
    return this.#reloader.close();
  }

  async #reload(): Promise<void> {
    await this.#readConfig();
    await this.#reloader.watch([this.#opts.tlsConfigFile, ...this.#entries.flatMap((e) => [e.cert, e.key])]);
    if (this.#reloader.closed) return;
    const ca = this.#opts.caPem?.();
    const now = new Date();
    const states = new Map<string, EntryState>();
    for (const entry of this.#entries) {
      const key = entryKey(entry);
      if (states.has(key)) continue;
      const s = this.#states.get(key) ?? { entry };
      states.set(key, s);
      await this.#refresh(s, ca, now);
    }
    if (this.#reloader.closed) return;
    this.#states = states;
    const next = this.#assign();
    this.#logProblems();
    this.#warnExpiring(next, now);
    this.#publish(next);
    this.#arm();
  }

  async #readConfig() {
    const path = this.#opts.tlsConfigFile;
    try {
      const text = await readText(path, "tls config file");
      if (text !== this.#configText || this.#configProblem) {
        this.#entries = parseTlsConfig(text, path);
        this.#configText = text;
      }
      this.#configProblem = undefined;
    } catch (e) {
      this.#configProblem = errMessage(e);
    }
    if (this.#configProblem !== this.#configLogged) {
      if (this.#configProblem) log.warn(`${this.#configProblem}; keeping the previous identities`);
      else if (this.#configLogged) log.info("tls config file loaded", { file: path });
      this.#configLogged = this.#configProblem;
    }
  }

  /** Reads one pair's files, parses them when they changed, and decides what stays in service. */
  async #refresh(s: EntryState, ca: string | undefined, now: Date) {
    let texts: PairTexts;
    try {
      texts = await readPairTexts(s.entry);
    } catch (e) {
      s.problem = errMessage(e);
      s.keptOld = !!s.pair;
      return;
    }
    if (!s.texts || texts.certText !== s.texts.certText || texts.keyText !== s.texts.keyText || ca !== s.ca) {
      s.texts = texts;
      s.ca = ca;
      try {
        s.parsed = parsePair(s.entry, texts, ca);
        s.parseError = undefined;
      } catch (e) {
        s.parsed = undefined;
        s.parseError = errMessage(e);
      }
    }
    if (!s.parsed) {
      s.problem = s.parseError;
      s.keptOld = !!s.pair;
      return;
    }
    const problem = validityProblem(s.parsed, now);
    // A candidate outside its validity window only replaces a pair that is no better.
    if (
      !problem || !s.pair || validityProblem(s.pair, now) || s.pair.fingerprint256 === s.parsed.fingerprint256
    ) {
      s.pair = s.parsed;
    }
    s.problem = problem;
    s.keptOld = s.pair !== s.parsed;
  }

  /** Indexes pairs in service by CN, in config order; a later duplicate CN is refused. */
  #assign(): Map<string, ClientPair> {
    const next = new Map<string, ClientPair>();
    for (const entry of this.#entries) {
      const s = this.#states.get(entryKey(entry));
      if (!s?.pair) continue;
      const other = next.get(s.pair.cn);
      if (other && other !== s.pair) {
        s.problem = `${duplicateMessage(s.pair.cn, other, s.pair)}; the second is ignored`;
        s.keptOld = false;
        continue;
      }
      next.set(s.pair.cn, s.pair);
    }
    return next;
  }

  #logProblems() {
    for (const s of this.#states.values()) {
      if (s.problem === s.logged) continue;
      if (s.problem) {
        const kept = s.pair && s.keptOld
          ? `; keeping serial ${s.pair.serial} (CN "${s.pair.cn}") in service until fixed`
          : "";
        log.warn(`${s.problem}${kept}`);
      } else if (s.logged && s.pair) {
        log.info("client certificate recovered", {
          file: s.entry.cert,
          cn: s.pair.cn,
          serial: s.pair.serial,
        });
      }
      s.logged = s.problem;
    }
  }

  #warnExpiring(next: Map<string, ClientPair>, now: Date) {
    for (const [cn, pair] of next) {
      const msg = expiryWarning(pair, now);
      if (!msg) continue;
      const last = this.#expiryWarned.get(cn);
      if (last !== undefined && now.getTime() - last < DAY_MS) continue;
      this.#expiryWarned.set(cn, now.getTime());
      log.warn(msg);
    }
  }

  #publish(next: Map<string, ClientPair>) {
    const prev = this.#current;
    this.#current = next;
    const events: Array<[string, ClientPair | undefined]> = [];
    for (const [cn, pair] of next) {
      const old = prev.get(cn);
      if (old?.fingerprint256 === pair.fingerprint256) continue;
      log.info(old ? "client certificate changed" : "client identity added", {
        cn,
        serial: pair.serial,
        notAfter: pair.notAfter.toISOString(),
        file: pair.certFile,
      });
      events.push([cn, pair]);
    }
    for (const cn of prev.keys()) {
      if (next.has(cn)) continue;
      log.info("client identity removed", { cn });
      events.push([cn, undefined]);
    }
    for (const [cn, pair] of events) this.#changes.emit("change", cn, pair);
  }

  /** Next periodic re-read: fast while anything is wrong, so a bootstrapping kubelet is followed at once. */
  #arm() {
    const troubled = this.#configProblem !== undefined || [...this.#states.values()].some((s) => s.problem);
    this.#reloader.after(troubled ? this.#opts.fastIntervalMs : this.#opts.normalIntervalMs);
  }
}
