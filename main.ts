/**
 * lite-apiserver: a light-weight Kubernetes API proxy with an identity-scoped offline cache.
 * Entry point: dispatches to a subcommand and turns user-facing errors into one clear line.
 */
import { ConfigError } from "./lib/config/errors.ts";
import { VERSION } from "./lib/version.ts";

const USAGE = `lite-apiserver ${VERSION}: a Kubernetes API proxy with an offline cache for edge nodes

Usage:
  lite-apiserver serve [flags]          run the proxy (see: lite-apiserver serve --help)
  lite-apiserver status [flags]         print online/offline, upstreams, cache and certificates
  lite-apiserver kubeconfig redirect    point a component's kubeconfig at lite-apiserver
  lite-apiserver kubeconfig restore     put the original kubeconfig back
  lite-apiserver autonomy [flags]       cloud-side: keep pods on opted-in edge nodes from eviction
  lite-apiserver --version              print the version
`;

async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "serve":
      return (await import("./lib/cli/serve.ts")).serveCommand(rest);
    case "status":
      return (await import("./lib/cli/status.ts")).statusCommand(rest);
    case "kubeconfig":
      return (await import("./lib/cli/kubeconfig.ts")).kubeconfigCommand(rest);
    case "autonomy":
      return (await import("./lib/cli/autonomy.ts")).autonomyCommand(rest);
    case "--version":
    case "-v":
    case "version":
      console.log(`lite-apiserver ${VERSION}`);
      return 0;
    case undefined:
    case "--help":
    case "-h":
    case "help":
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      // Flags with no subcommand mean "serve", as SuperEdge's lite-apiserver is started.
      if (cmd.startsWith("-")) return (await import("./lib/cli/serve.ts")).serveCommand(argv);
      throw new ConfigError(
        `unknown command "${cmd}" (expected serve, status, kubeconfig or autonomy; see --help)`,
      );
  }
}

if (import.meta.main) {
  try {
    // Exit explicitly: once a command is done, no leftover timer or socket may keep us alive.
    Deno.exit(await run(Deno.args));
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`lite-apiserver: ${err.message}`);
      Deno.exit(2);
    }
    console.error(`lite-apiserver: internal error: ${err instanceof Error ? err.stack : String(err)}`);
    Deno.exit(1);
  }
}
