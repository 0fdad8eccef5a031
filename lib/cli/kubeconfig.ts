/**
 * `lite-apiserver kubeconfig redirect|restore`: point a component's kubeconfig (kubelet,
 * kube-proxy, any client) at lite-apiserver, and put it back.
 */
import { ConfigError } from "../config/errors.ts";
import {
  applyRedirect,
  BACKUP_SUFFIX,
  DEFAULT_SERVER,
  DEFAULT_TLS_CONFIG,
  planDiff,
  planRedirect,
  restoreKubeconfig,
} from "../kubeconfig/redirect.ts";

const USAGE = `Usage: lite-apiserver kubeconfig <redirect|restore> --kubeconfig FILE [flags]

  redirect   point the current context's cluster at lite-apiserver
  restore    put the original kubeconfig back

See: lite-apiserver kubeconfig redirect --help
`;

const REDIRECT_HELP = `Usage: lite-apiserver kubeconfig redirect --kubeconfig FILE [flags]

Points the kubeconfig's CURRENT context at lite-apiserver, for kubelet
(/etc/kubernetes/kubelet.conf), kube-proxy or any client:
  - backs the file up to FILE${BACKUP_SUFFIX} (0600, the first time only);
  - sets the current context's cluster "server" to --server and keeps everything else,
    including the certificate-authority: lite-apiserver's serving certificate
    (--tls-cert-file) must therefore be issued by the cluster CA, for the address in --server;
  - registers the user's client certificate in --tls-config-file so lite-apiserver presents
    that same identity upstream (embedded client-certificate-data/client-key-data are written
    to <tls-config dir>/identities/<context>.pem, 0600); token users need nothing: tokens pass
    through;
  - prints the original server URL: use it as lite-apiserver's --kube-apiserver-url.
Running it again changes nothing. lite-apiserver picks the new identity up by itself (it
watches the tls-config); restart the component afterwards (e.g. systemctl restart kubelet).

Flags:
  --kubeconfig FILE          the kubeconfig to redirect (required)
  --server URL               lite-apiserver's address (default ${DEFAULT_SERVER})
  --tls-config-file FILE     lite-apiserver's tls-config (default ${DEFAULT_TLS_CONFIG})
  --dry-run                  print a diff of what would change; write nothing
  -h, --help                 this help
`;

const RESTORE_HELP = `Usage: lite-apiserver kubeconfig restore --kubeconfig FILE

Puts back the kubeconfig saved by "redirect" (FILE${BACKUP_SUFFIX}) byte for byte and removes
the backup. The identity stays registered in the tls-config (harmless; remove it by hand).

Flags:
  --kubeconfig FILE          the kubeconfig to restore (required)
  -h, --help                 this help
`;

interface Parsed {
  values: Map<string, string>;
  flags: Set<string>;
  help: boolean;
}

/** Parses `--name value`, `--name=value` and boolean flags; unknown flags are a ConfigError. */
function parseFlags(args: string[], valued: string[], booleans: string[]): Parsed {
  const out: Parsed = { values: new Map(), flags: new Set(), help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") {
      out.help = true;
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.startsWith("--") ? (eq > 0 ? a.slice(2, eq) : a.slice(2)) : "";
    if (valued.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined || v === "") throw new ConfigError(`--${name} needs a value`);
      out.values.set(name, v);
    } else if (booleans.includes(name) && eq < 0) {
      out.flags.add(name);
    } else {
      throw new ConfigError(`unknown argument "${a}" (see --help)`);
    }
  }
  return out;
}

/** Entry point of `lite-apiserver kubeconfig ...`; returns the exit code. */
export async function kubeconfigCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "redirect") return await redirect(rest);
  if (sub === "restore") return await restore(rest);
  if (sub === undefined || sub === "-h" || sub === "--help" || sub === "help") {
    console.log(USAGE);
    return sub === undefined ? 2 : 0;
  }
  throw new ConfigError(`unknown kubeconfig command "${sub}" (expected redirect or restore)`);
}

async function redirect(args: string[]): Promise<number> {
  const p = parseFlags(args, ["kubeconfig", "server", "tls-config-file"], ["dry-run"]);
  if (p.help) {
    console.log(REDIRECT_HELP);
    return 0;
  }
  const kubeconfig = p.values.get("kubeconfig");
  if (!kubeconfig) throw new ConfigError("kubeconfig redirect: --kubeconfig FILE is required");
  const plan = await planRedirect({
    kubeconfig,
    server: p.values.get("server"),
    tlsConfigFile: p.values.get("tls-config-file"),
  });
  const upstream = plan.originalServer
    ? `upstream kube-apiserver (lite-apiserver --kube-apiserver-url): ${plan.originalServer}`
    : "upstream kube-apiserver: unknown";
  if (p.flags.has("dry-run")) {
    if (plan.changes.length === 0) {
      console.log(`${kubeconfig}: already redirected to ${plan.server}; nothing would change`);
    } else console.log(planDiff(plan));
    for (const n of plan.notes) console.log(`note: ${n}`);
    console.log(upstream);
    return 0;
  }
  if (plan.changes.length === 0) {
    console.log(`${kubeconfig}: already redirected to ${plan.server}; nothing changed`);
  } else {
    for (const line of await applyRedirect(plan)) console.log(line);
    console.log("restart the component that uses this kubeconfig (e.g. systemctl restart kubelet)");
  }
  for (const n of plan.notes) console.log(`note: ${n}`);
  console.log(upstream);
  return 0;
}

async function restore(args: string[]): Promise<number> {
  const p = parseFlags(args, ["kubeconfig"], []);
  if (p.help) {
    console.log(RESTORE_HELP);
    return 0;
  }
  const kubeconfig = p.values.get("kubeconfig");
  if (!kubeconfig) throw new ConfigError("kubeconfig restore: --kubeconfig FILE is required");
  for (const line of await restoreKubeconfig(kubeconfig)) console.log(line);
  return 0;
}
