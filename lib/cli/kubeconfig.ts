/**
 * `lite-apiserver kubeconfig redirect|restore`: point a component's kubeconfig (kubelet,
 * kube-proxy, any client) at lite-apiserver, and put it back.
 */
import { ConfigError } from "../config/errors.ts";
import { type Flag, flagValue, helpText, parseFlags } from "../config/flags.ts";
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

const REDIRECT_USAGE = `Usage: lite-apiserver kubeconfig redirect --kubeconfig FILE [flags]

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
watches the tls-config); restart the component afterwards (e.g. systemctl restart kubelet).`;

const KUBECONFIG_FLAG: Flag = { name: "kubeconfig", arg: "FILE", help: "the kubeconfig (required)" };

const REDIRECT_FLAGS: readonly Flag[] = [
  KUBECONFIG_FLAG,
  { name: "server", arg: "URL", help: "lite-apiserver's address", default: DEFAULT_SERVER },
  { name: "tls-config-file", arg: "FILE", help: "lite-apiserver's tls-config", default: DEFAULT_TLS_CONFIG },
  { name: "dry-run", help: "print a diff of what would change; write nothing" },
];

const RESTORE_USAGE = `Usage: lite-apiserver kubeconfig restore --kubeconfig FILE

Puts back the kubeconfig saved by "redirect" (FILE${BACKUP_SUFFIX}) byte for byte and removes
the backup. The identity stays registered in the tls-config (harmless; remove it by hand).`;

const RESTORE_FLAGS: readonly Flag[] = [KUBECONFIG_FLAG];

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
  const p = parseFlags("kubeconfig redirect", REDIRECT_FLAGS, args);
  if (p.help) {
    console.log(helpText(REDIRECT_USAGE, REDIRECT_FLAGS));
    return 0;
  }
  const kubeconfig = flagValue(REDIRECT_FLAGS, p, "kubeconfig");
  if (!kubeconfig) throw new ConfigError("kubeconfig redirect: --kubeconfig FILE is required");
  const plan = await planRedirect({
    kubeconfig,
    server: flagValue(REDIRECT_FLAGS, p, "server"),
    tlsConfigFile: flagValue(REDIRECT_FLAGS, p, "tls-config-file"),
  });
  const upstream = plan.originalServer
    ? `upstream kube-apiserver (lite-apiserver --kube-apiserver-url): ${plan.originalServer}`
    : "upstream kube-apiserver: unknown";
  if (p.given.has("dry-run")) {
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
  const p = parseFlags("kubeconfig restore", RESTORE_FLAGS, args);
  if (p.help) {
    console.log(helpText(RESTORE_USAGE, RESTORE_FLAGS));
    return 0;
  }
  const kubeconfig = flagValue(RESTORE_FLAGS, p, "kubeconfig");
  if (!kubeconfig) throw new ConfigError("kubeconfig restore: --kubeconfig FILE is required");
  for (const line of await restoreKubeconfig(kubeconfig)) console.log(line);
  return 0;
}
