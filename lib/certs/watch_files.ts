/**
 * Calls back (debounced) when any of a set of files may have changed: written in place, replaced by
 * rename (editors), or re-pointed through a symlink swap (kubelet's kubelet-client-current.pem).
 *
 * Watches the parent directories, not the files: a watch on a file follows the old inode after a rename
 * and dies with it. Directories of symlink targets are watched too, so a write to the target counts.
 * Callers keep a periodic re-read as a safety net (inotify limits, network filesystems).
 */
import { basename, dirname, resolve } from "node:path";
import { log } from "../log.ts";
import { errMessage } from "../config/errors.ts";

interface DirWatch {
  watcher: Deno.FsWatcher;
  loop: Promise<void>;
}

export class FileWatcher {
  #dirs = new Map<string, DirWatch>();
  #names = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** `onChange` runs `debounceMs` after the first relevant event of a burst. */
  constructor(private readonly onChange: () => void, private readonly debounceMs = 100) {}

  /** Sets the files to watch; re-resolves symlinks, so call it again after each reload. */
  async setPaths(paths: string[]): Promise<void> {
    const dirs = new Set<string>();
    const names = new Set<string>();
    for (const p of paths) {
      const abs = resolve(p);
      names.add(basename(abs));
      dirs.add(await existingDir(dirname(abs), names));
      const target = await realPath(abs);
      if (target && target !== abs) {
        names.add(basename(target));
        dirs.add(dirname(target));
      }
    }
    if (this.#closed) return;
    this.#names = names;
    for (const [dir, w] of this.#dirs) {
      if (!dirs.has(dir)) {
        w.watcher.close();
        this.#dirs.delete(dir);
      }
    }
    for (const dir of dirs) if (!this.#dirs.has(dir)) this.#watch(dir);
  }

  #watch(dir: string) {
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(dir, { recursive: false });
    } catch (e) {
      log.warn(`cannot watch directory ${dir} for certificate changes; relying on periodic re-reads`, {
        error: errMessage(e),
      });
      return;
    }
    const loop = (async () => {
      try {
        for await (const ev of watcher) {
          if (ev.kind === "access") continue; // our own reads
          if (ev.paths.some((p) => this.#names.has(basename(p)))) this.#schedule();
        }
      } catch (e) {
        if (!this.#closed) log.warn(`watching ${dir} stopped`, { error: errMessage(e) });
      }
    })();
    this.#dirs.set(dir, { watcher, loop });
  }

  #schedule() {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#closed) this.onChange();
    }, this.debounceMs);
  }

  /** Stops every directory watch and the pending debounce timer. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const loops = [...this.#dirs.values()].map((w) => {
      try {
        w.watcher.close();
      } catch { /* already closed */ }
      return w.loop;
    });
    this.#dirs.clear();
    await Promise.all(loops);
  }
}

/** The path behind symlinks, or undefined when it does not resolve (missing file, dangling link). */
async function realPath(p: string): Promise<string | undefined> {
  try {
    return await Deno.realPath(p);
  } catch {
    return undefined;
  }
}

/**
 * The nearest existing ancestor of `dir` (itself when it exists); the missing child's name joins
 * `names` so its creation wakes us.
 */
async function existingDir(dir: string, names: Set<string>): Promise<string> {
  let d = dir;
  for (;;) {
    try {
      if ((await Deno.stat(d)).isDirectory) return (await realPath(d)) ?? d;
    } catch { /* missing: go up */ }
    const up = dirname(d);
    if (up === d) return d;
    names.add(basename(d));
    d = up;
  }
}
