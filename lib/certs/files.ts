/** Reading certificate files with user-facing errors. */
import { ConfigError } from "../config/errors.ts";
import { errMessage } from "./pem.ts";

/** Reads a text file; throws ConfigError naming the file and the flag or role it came from. */
export async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new ConfigError(`${what} ${path} does not exist`);
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new ConfigError(`${what} ${path} is not readable (permission denied)`);
    }
    if (e instanceof Deno.errors.IsADirectory) throw new ConfigError(`${what} ${path} is a directory`);
    throw new ConfigError(`cannot read ${what} ${path}: ${errMessage(e)}`);
  }
}

/** Days, rounded down, from now until `t` (negative when past). */
export function daysUntil(t: Date, now = new Date()): number {
  return Math.floor((t.getTime() - now.getTime()) / 86_400_000);
}
