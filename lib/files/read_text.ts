/** Reading a file the user named, with a one-line ConfigError saying which file and what it is for. */
import { ConfigError, errMessage } from "../config/errors.ts";

/** Reads a text file; throws ConfigError naming the file and its role (`what`, e.g. "client key file"). */
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
