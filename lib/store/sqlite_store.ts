/**
 * The SQLite cache backend: one database file `<dir>/cache.db` (WAL, synchronous=FULL).
 *
 * Layout: `objects` (one row per object), `lists` (one row per list: envelope, resourceVersion) and
 * `items` (one row per list item, primary key (list_id, item_key)), so a watch event is one O(log n)
 * upsert or delete and a list is one ordered index range scan. `apply` runs a batch as one transaction.
 *
 * Corruption: a database file that SQLite cannot read (garbage bytes, "malformed" pages), whether at open
 * or later, is logged, moved aside to `cache.db.corrupt-<timestamp>` (with its -wal/-shm) and replaced by
 * an empty cache. A cache can always be refetched; refusing to start would take the node's clients offline
 * for nothing. A valid SQLite file that is not ours is a ConfigError instead: it may be someone's data.
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { ConfigError, errMessage } from "../config/errors.ts";
import { log } from "../log.ts";
import type { CacheKey, EntryInfo, ListMeta, Store, StoredList, StoredObject, WriteOp } from "./store.ts";

/** PRAGMA application_id marking our databases ("lapi"). */
const APP_ID = 0x6c617069;
const SCHEMA_VERSION = 1;
const SQLITE_MAGIC = "SQLite format 3\0";

const SCHEMA = `
CREATE TABLE objects(
  identity TEXT NOT NULL, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
  content_type TEXT NOT NULL, stored_at INTEGER NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY(identity, resource, namespace, name));
CREATE INDEX objects_stored_at ON objects(stored_at);
CREATE TABLE lists(
  id INTEGER PRIMARY KEY,
  identity TEXT NOT NULL, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
  envelope TEXT NOT NULL, resource_version TEXT NOT NULL, content_type TEXT NOT NULL,
  stored_at INTEGER NOT NULL,
  UNIQUE(identity, resource, namespace, name));
CREATE INDEX lists_stored_at ON lists(stored_at);
CREATE TABLE items(
  list_id INTEGER NOT NULL, item_key TEXT NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY(list_id, item_key));
`;

const KEY_WHERE = "identity = ? AND resource = ? AND namespace = ? AND name = ?";

type Row = Record<string, unknown>;

function keyArgs(k: CacheKey): [string, string, string, string] {
  return [k.identity, k.resource, k.namespace, k.name];
}

/** SQLite's "this file is damaged" errors (SQLITE_NOTADB, SQLITE_CORRUPT). */
function isCorruption(e: unknown): boolean {
  const msg = errMessage(e);
  return /file is not a database|malformed|file is encrypted|disk image/i.test(msg);
}

async function chmodIfExists(path: string, mode: number): Promise<void> {
  try {
    await Deno.chmod(path, mode);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** The prepared statements, reused for every call. */
class Statements {
  getObject: StatementSync;
  putObject: StatementSync;
  deleteObject: StatementSync;
  getListMeta: StatementSync;
  getListItems: StatementSync;
  getListItem: StatementSync;
  listId: StatementSync;
  upsertList: StatementSync;
  deleteItemsOf: StatementSync;
  deleteList: StatementSync;
  upsertItem: StatementSync;
  deleteItem: StatementSync;
  setListVersion: StatementSync;
  evictItems: StatementSync;
  evictLists: StatementSync;
  evictObjects: StatementSync;

  constructor(db: DatabaseSync) {
    this.getObject = db.prepare(`SELECT content_type, stored_at, body FROM objects WHERE ${KEY_WHERE}`);
    this.putObject = db.prepare(
      `INSERT INTO objects(identity, resource, namespace, name, content_type, stored_at, body)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(identity, resource, namespace, name) DO UPDATE SET
         content_type = excluded.content_type, stored_at = excluded.stored_at, body = excluded.body`,
    );
    this.deleteObject = db.prepare(`DELETE FROM objects WHERE ${KEY_WHERE}`);
    this.getListMeta = db.prepare(
      `SELECT id, envelope, resource_version, content_type, stored_at FROM lists WHERE ${KEY_WHERE}`,
    );
    this.getListItems = db.prepare(`SELECT item_key, body FROM items WHERE list_id = ? ORDER BY item_key`);
    this.getListItem = db.prepare(`SELECT body FROM items WHERE list_id = ? AND item_key = ?`);
    this.listId = db.prepare(`SELECT id FROM lists WHERE ${KEY_WHERE}`);
    this.upsertList = db.prepare(
      `INSERT INTO lists(identity, resource, namespace, name, envelope, resource_version, content_type, stored_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(identity, resource, namespace, name) DO UPDATE SET
         envelope = excluded.envelope, resource_version = excluded.resource_version,
         content_type = excluded.content_type, stored_at = excluded.stored_at
       RETURNING id`,
    );
    this.deleteItemsOf = db.prepare(`DELETE FROM items WHERE list_id = ?`);
    this.deleteList = db.prepare(`DELETE FROM lists WHERE id = ?`);
    this.upsertItem = db.prepare(
      `INSERT INTO items(list_id, item_key, body) VALUES (?, ?, ?)
       ON CONFLICT(list_id, item_key) DO UPDATE SET body = excluded.body`,
    );
    this.deleteItem = db.prepare(`DELETE FROM items WHERE list_id = ? AND item_key = ?`);
    this.setListVersion = db.prepare(`UPDATE lists SET resource_version = ?, stored_at = ? WHERE id = ?`);
    this.evictItems = db.prepare(
      `DELETE FROM items WHERE list_id IN (SELECT id FROM lists WHERE stored_at < ?)`,
    );
    this.evictLists = db.prepare(`DELETE FROM lists WHERE stored_at < ?`);
    this.evictObjects = db.prepare(`DELETE FROM objects WHERE stored_at < ?`);
  }
}

/** Opens (creating or recovering as needed) the SQLite store in an existing, writable `dir`. */
export async function openSqliteStore(dir: string): Promise<Store> {
  const store = new SqliteStore(join(dir, "cache.db"));
  await store.open();
  return store;
}

class SqliteStore implements Store {
  readonly backend = "sqlite" as const;
  #path: string;
  #db: DatabaseSync | undefined;
  #st: Statements | undefined;
  #entryStmts = new Map<string, { objects: StatementSync; lists: StatementSync }>();

  constructor(path: string) {
    this.#path = path;
  }

  /** Opens the database; a damaged file is moved aside once and replaced by an empty one. */
  async open(): Promise<void> {
    await this.#checkFile();
    try {
      this.#openDb();
    } catch (e) {
      if (!isCorruption(e)) throw e;
      this.#closeDb();
      await this.#moveAside(errMessage(e));
      this.#openDb();
    }
    for (const suffix of ["", "-wal", "-shm"]) await chmodIfExists(this.#path + suffix, 0o600);
  }

  /** Refuses non-files; moves aside a non-empty file without the SQLite header; pre-creates it 0600. */
  async #checkFile(): Promise<void> {
    let info: Deno.FileInfo | undefined;
    try {
      info = await Deno.stat(this.#path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new ConfigError(`cannot use cache database ${this.#path}: ${errMessage(e)}`);
      }
    }
    if (info && !info.isFile) throw new ConfigError(`cache database ${this.#path} is not a regular file`);
    if (info && info.size > 0) {
      const head = new Uint8Array(16);
      const f = await Deno.open(this.#path, { read: true });
      let n: number | null = 0;
      try {
        n = await f.read(head);
      } finally {
        f.close();
      }
      if (n !== 16 || new TextDecoder().decode(head) !== SQLITE_MAGIC) {
        await this.#moveAside("file is not a database");
        info = undefined;
      }
    }
    if (!info) {
      // SQLite gives its -wal and -shm files the main file's mode: create it 0600 first.
      const f = await Deno.open(this.#path, { write: true, create: true, mode: 0o600 });
      f.close();
    }
  }

  #openDb(): void {
    const db = new DatabaseSync(this.#path);
    this.#db = db;
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    // 8 MiB of page cache: a patched 5,000-pod list stays in memory (default is 2 MiB).
    db.exec("PRAGMA cache_size = -8192");
    const appId = (db.prepare("PRAGMA application_id").get() as Row).application_id as number;
    const version = (db.prepare("PRAGMA user_version").get() as Row).user_version as number;
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as Row).n as number;
    if (tables === 0 && appId === 0 && version === 0) {
      db.exec("BEGIN IMMEDIATE");
      try {
        db.exec(SCHEMA);
        db.exec(`PRAGMA application_id = ${APP_ID}`);
        db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
        db.exec("COMMIT");
      } catch (e) {
        db.exec("ROLLBACK");
        throw e;
      }
    } else if (appId !== APP_ID) {
      this.#closeDb();
      throw new ConfigError(`${this.#path} is an SQLite database that is not a lite-apiserver cache`);
    } else if (version !== SCHEMA_VERSION) {
      this.#closeDb();
      throw new ConfigError(
        `${this.#path} has cache schema version ${version}, this build reads ${SCHEMA_VERSION}: ` +
          `remove the file or use a matching build`,
      );
    }
    this.#st = new Statements(db);
    this.#entryStmts.clear();
  }

  #closeDb(): void {
    try {
      this.#db?.close();
    } catch {
      // Closing a damaged database may fail too; it is being discarded.
    }
    this.#db = undefined;
    this.#st = undefined;
  }

  async #moveAside(reason: string): Promise<void> {
    const aside = `${this.#path}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    log.warn("cache database is damaged: moved aside, starting with an empty cache", {
      path: this.#path,
      movedTo: aside,
      reason,
    });
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        await Deno.rename(this.#path + suffix, aside + suffix);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }

  /** Runs `fn`; if the database turns out to be damaged, recovers to an empty one and runs it again. */
  async #guard<T>(fn: (st: Statements, db: DatabaseSync) => T): Promise<T> {
    if (!this.#db || !this.#st) throw new Error("store is closed");
    try {
      return fn(this.#st, this.#db);
    } catch (e) {
      if (!isCorruption(e)) throw e;
      this.#closeDb();
      await this.#moveAside(errMessage(e));
      await this.open();
      return fn(this.#st!, this.#db!);
    }
  }

  getObject(key: CacheKey): Promise<StoredObject | undefined> {
    return this.#guard((st) => {
      const row = st.getObject.get(...keyArgs(key)) as Row | undefined;
      if (!row) return undefined;
      return {
        body: row.body as Uint8Array,
        contentType: row.content_type as string,
        storedAt: row.stored_at as number,
      };
    });
  }

  getList(key: CacheKey): Promise<StoredList | undefined> {
    return this.#guard((st, db) => {
      // One read transaction so the meta and the items are from the same commit.
      db.exec("BEGIN");
      try {
        const row = st.getListMeta.get(...keyArgs(key)) as Row | undefined;
        if (!row) return undefined;
        const meta: ListMeta = {
          envelope: row.envelope as string,
          resourceVersion: row.resource_version as string,
          contentType: row.content_type as string,
          storedAt: row.stored_at as number,
        };
        const rows = st.getListItems.all(row.id as number) as Row[];
        return {
          meta,
          items: rows.map((r) => r.body as Uint8Array),
          itemKeys: rows.map((r) => r.item_key as string),
        };
      } finally {
        db.exec("COMMIT");
      }
    });
  }

  getListMeta(key: CacheKey): Promise<ListMeta | undefined> {
    return this.#guard((st) => {
      const row = st.getListMeta.get(...keyArgs(key)) as Row | undefined;
      return row && {
        envelope: row.envelope as string,
        resourceVersion: row.resource_version as string,
        contentType: row.content_type as string,
        storedAt: row.stored_at as number,
      };
    });
  }

  getListItem(key: CacheKey, itemKey: string): Promise<{ meta: ListMeta; body: Uint8Array } | undefined> {
    return this.#guard((st, db) => {
      db.exec("BEGIN");
      try {
        const row = st.getListMeta.get(...keyArgs(key)) as Row | undefined;
        if (!row) return undefined;
        const item = st.getListItem.get(row.id as number, itemKey) as Row | undefined;
        if (!item) return undefined;
        const meta: ListMeta = {
          envelope: row.envelope as string,
          resourceVersion: row.resource_version as string,
          contentType: row.content_type as string,
          storedAt: row.stored_at as number,
        };
        return { meta, body: item.body as Uint8Array };
      } finally {
        db.exec("COMMIT");
      }
    });
  }

  apply(ops: WriteOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return this.#guard((st, db) => {
      db.exec("BEGIN IMMEDIATE");
      try {
        const batch: Batch = { listIds: new Map(), versions: new Map() };
        for (const op of ops) applyOp(st, op, batch);
        // One resourceVersion/stored_at update per patched list, not one per event.
        const now = Date.now();
        for (const [id, rv] of batch.versions) st.setListVersion.run(rv, now, id);
        db.exec("COMMIT");
      } catch (e) {
        if (db.isTransaction) db.exec("ROLLBACK");
        throw e;
      }
    });
  }

  entries(filter?: { identity?: string; resource?: string }): Promise<EntryInfo[]> {
    return this.#guard((_st, db) => {
      const conds: string[] = [];
      const args: string[] = [];
      if (filter?.identity !== undefined) conds.push("identity = ?"), args.push(filter.identity);
      if (filter?.resource !== undefined) conds.push("resource = ?"), args.push(filter.resource);
      const where = conds.length ? `WHERE ${conds.join(" AND ")}` : "";
      let stmts = this.#entryStmts.get(where);
      if (!stmts) {
        stmts = {
          objects: db.prepare(
            `SELECT identity, resource, namespace, name, length(body) AS bytes, stored_at FROM objects ${where}`,
          ),
          lists: db.prepare(
            `SELECT identity, resource, namespace, name, stored_at,
               length(CAST(envelope AS BLOB)) +
                 coalesce((SELECT sum(length(body)) FROM items WHERE list_id = lists.id), 0) AS bytes,
               (SELECT count(*) FROM items WHERE list_id = lists.id) AS count
             FROM lists ${where}`,
          ),
        };
        this.#entryStmts.set(where, stmts);
      }
      const out: EntryInfo[] = [];
      const keyOf = (r: Row): CacheKey => ({
        identity: r.identity as string,
        resource: r.resource as string,
        namespace: r.namespace as string,
        name: r.name as string,
      });
      db.exec("BEGIN");
      try {
        for (const r of stmts.objects.all(...args) as Row[]) {
          out.push({
            key: keyOf(r),
            kind: "object",
            bytes: r.bytes as number,
            count: 1,
            storedAt: r.stored_at as number,
          });
        }
        for (const r of stmts.lists.all(...args) as Row[]) {
          out.push({
            key: keyOf(r),
            kind: "list",
            bytes: r.bytes as number,
            count: r.count as number,
            storedAt: r.stored_at as number,
          });
        }
      } finally {
        db.exec("COMMIT");
      }
      return out;
    });
  }

  evictOlderThan(epochMs: number): Promise<number> {
    return this.#guard((st, db) => {
      db.exec("BEGIN IMMEDIATE");
      try {
        st.evictItems.run(epochMs);
        const n = Number(st.evictLists.run(epochMs).changes) + Number(st.evictObjects.run(epochMs).changes);
        db.exec("COMMIT");
        return n;
      } catch (e) {
        if (db.isTransaction) db.exec("ROLLBACK");
        throw e;
      }
    });
  }

  close(): Promise<void> {
    this.#closeDb();
    return Promise.resolve();
  }
}

/** What one batch remembers: list ids by key, and the last resourceVersion of each patched list. */
interface Batch {
  listIds: Map<string, number | undefined>;
  versions: Map<number, string>;
}

function applyOp(st: Statements, op: WriteOp, batch: Batch): void {
  const k = keyArgs(op.key);
  switch (op.op) {
    case "putObject":
      st.putObject.run(...k, op.value.contentType, op.value.storedAt, op.value.body);
      return;
    case "deleteObject":
      st.deleteObject.run(...k);
      return;
    case "deleteList": {
      const id = (st.listId.get(...k) as Row | undefined)?.id as number | undefined;
      batch.listIds.set(k.join("\0"), undefined);
      if (id === undefined) return;
      st.deleteItemsOf.run(id);
      st.deleteList.run(id);
      batch.versions.delete(id);
      return;
    }
    case "replaceList": {
      const m = op.meta;
      const row = st.upsertList.get(...k, m.envelope, m.resourceVersion, m.contentType, m.storedAt) as Row;
      const id = row.id as number;
      st.deleteItemsOf.run(id);
      for (const [itemKey, body] of op.items) st.upsertItem.run(id, itemKey, body);
      // Events queued before this list are superseded by it.
      batch.listIds.set(k.join("\0"), id);
      batch.versions.delete(id);
      return;
    }
    case "upsertItem":
    case "deleteItem":
    case "setListVersion": {
      const lk = k.join("\0");
      let id = batch.listIds.get(lk);
      if (!batch.listIds.has(lk)) {
        id = (st.listId.get(...k) as Row | undefined)?.id as number | undefined;
        batch.listIds.set(lk, id);
      }
      if (id === undefined) return; // No cached list to patch: the next full list will bring it.
      if (op.op === "upsertItem") st.upsertItem.run(id, op.itemKey, op.body);
      if (op.op === "deleteItem") st.deleteItem.run(id, op.itemKey);
      batch.versions.set(id, op.resourceVersion);
      return;
    }
  }
}
