/**
 * Command-line flags from one table per subcommand: the same rows drive parsing, `--help` and
 * defaults. Adding a flag is adding one row:
 *
 *   { name: "port", arg: "PORT", help: "listen port", default: "51003" }
 *
 * Accepted forms: `--name value`, `--name=value`, and `--name` alone for a switch (a row without
 * `arg`); `-h`/`--help` anywhere asks for help. Every mistake is a one-line ConfigError.
 */
import { ConfigError } from "./errors.ts";

/** One flag of a subcommand. */
export interface Flag {
  /** The long name without its dashes, e.g. "cache-dir". */
  name: string;
  /** The value's placeholder in help ("FILE"); omitted for a switch, which takes no value. */
  arg?: string;
  /** One line for `--help`. */
  help: string;
  /** The value when the flag is not given (shown in help). */
  default?: string;
  /** May be given several times; every value is kept, in order. */
  repeatable?: boolean;
  /** Accepted but not listed in help (legacy names of other tools). */
  hidden?: boolean;
}

/** What the command line said: the values given per flag name (a switch given holds "true"). */
export interface ParsedFlags {
  given: Map<string, string[]>;
  help: boolean;
}

/** Parses `args` against `table`; `command` names the subcommand in error messages. */
export function parseFlags(command: string, table: readonly Flag[], args: string[]): ParsedFlags {
  const byName = new Map(table.map((f) => [f.name, f]));
  const out: ParsedFlags = { given: new Map(), help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") {
      out.help = true;
      continue;
    }
    if (!a.startsWith("--")) {
      throw new ConfigError(`${command}: unexpected argument "${a}" (flags start with --)`);
    }
    const eq = a.indexOf("=");
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const flag = byName.get(name);
    if (!flag) {
      throw new ConfigError(`${command}: unknown flag "${a}" (see lite-apiserver ${command} --help)`);
    }
    let value: string;
    if (flag.arg === undefined) {
      if (eq > 0) throw new ConfigError(`${command}: --${name} takes no value`);
      value = "true";
    } else {
      const v = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined || v === "") {
        throw new ConfigError(`${command}: --${name} needs a value (${flag.arg})`);
      }
      value = v;
    }
    const seen = out.given.get(name) ?? [];
    out.given.set(name, flag.repeatable ? [...seen, value] : [value]);
  }
  return out;
}

/** The default of `name` in `table` (undefined when it has none). */
export function defaultOf(table: readonly Flag[], name: string): string | undefined {
  const flag = table.find((f) => f.name === name);
  if (!flag) throw new Error(`no flag --${name} in this table`);
  return flag.default;
}

/** The last value given for `name`, else its default. */
export function flagValue(table: readonly Flag[], parsed: ParsedFlags, name: string): string | undefined {
  return parsed.given.get(name)?.at(-1) ?? defaultOf(table, name);
}

/** `--help` text: `intro` (usage and prose), then one line per visible flag with its default. */
export function helpText(intro: string, table: readonly Flag[]): string {
  const rows = table.filter((f) => !f.hidden).map((f) => [
    `--${f.name}${f.arg ? ` ${f.arg}` : ""}`,
    f.help + (f.default !== undefined ? ` (default ${f.default})` : ""),
  ]);
  rows.push(["-h, --help", "this help"]);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  return `${intro.trimEnd()}\n\nFlags:\n${rows.map(([l, r]) => `  ${l.padEnd(width)}${r}`).join("\n")}`;
}
