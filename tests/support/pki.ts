/**
 * Test PKI made with the openssl command line: a cluster CA, serving certificates and client
 * certificates (CN = user, O = groups). Everything is written to a fresh temporary directory.
 */
export interface CertPair {
  cert: string;
  key: string;
  /** cert and key concatenated in one file, as kubelet's kubelet-client-current.pem. */
  combined: string;
  certPem: string;
  keyPem: string;
  serial: string;
}

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  caPem: string;
  /** Issues a serving certificate for 127.0.0.1, ::1 and localhost (plus extra SANs). */
  server(name: string, sans?: string[]): Promise<CertPair>;
  /** Issues a client certificate. */
  client(
    cn: string,
    groups?: string[],
    opts?: { name?: string; days?: number; notBefore?: Date; notAfter?: Date },
  ): Promise<CertPair>;
  /** A self-signed certificate from an unrelated CA: what a rogue client would present. */
  rogue(cn: string, groups?: string[]): Promise<CertPair>;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

let counter = 0;

function subject(cn: string, groups: string[]): string {
  return groups.map((g) => `/O=${g}`).join("") + `/CN=${cn}`;
}

async function pair(dir: string, file: string, serial: string): Promise<CertPair> {
  const cert = `${dir}/${file}.crt`;
  const key = `${dir}/${file}.key`;
  const combined = `${dir}/${file}.pem`;
  const certPem = await Deno.readTextFile(cert);
  const keyPem = await Deno.readTextFile(key);
  await Deno.writeTextFile(combined, certPem + keyPem, { mode: 0o600 });
  return { cert, key, combined, certPem, keyPem, serial };
}

async function issue(
  dir: string,
  file: string,
  subj: string,
  ext: string,
  signer: { cert: string; key: string } | null,
  days = 365,
  dates?: { notBefore?: Date; notAfter?: Date },
): Promise<CertPair> {
  const serial = (BigInt(Date.now()) * 1000n + BigInt(++counter)).toString(16).toUpperCase();
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${file}.key`], dir);
  await Deno.writeTextFile(`${dir}/${file}.ext`, ext);
  if (signer && (dates?.notBefore || dates?.notAfter)) {
    // Explicit validity window (e.g. not yet valid): only `openssl ca` takes start/end dates in 3.0.
    await openssl(["req", "-new", "-key", `${file}.key`, "-subj", subj, "-out", `${file}.csr`], dir);
    await signWithDates(dir, file, serial, signer, dates.notBefore ?? new Date(), dates.notAfter);
  } else if (signer) {
    await openssl(["req", "-new", "-key", `${file}.key`, "-subj", subj, "-out", `${file}.csr`], dir);
    await openssl([
      "x509",
      "-req",
      "-in",
      `${file}.csr`,
      "-CA",
      signer.cert,
      "-CAkey",
      signer.key,
      "-set_serial",
      `0x${serial}`,
      "-days",
      String(days),
      "-extfile",
      `${file}.ext`,
      "-out",
      `${file}.crt`,
    ], dir);
  } else {
    await openssl([
      "req",
      "-x509",
      "-new",
      "-key",
      `${file}.key`,
      "-subj",
      subj,
      "-set_serial",
      `0x${serial}`,
      "-days",
      String(days),
      "-addext",
      ext.split("\n")[0],
      "-out",
      `${file}.crt`,
    ], dir);
  }
  return pair(dir, file, serial);
}

function asn1Time(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
}

async function signWithDates(
  dir: string,
  file: string,
  serial: string,
  signer: { cert: string; key: string },
  notBefore: Date,
  notAfter = new Date(notBefore.getTime() + 365 * 86_400_000),
): Promise<void> {
  const db = `${file}.cadb`;
  await Deno.mkdir(`${dir}/${db}`);
  await Deno.writeTextFile(`${dir}/${db}/index.txt`, "");
  await Deno.writeTextFile(`${dir}/${db}/serial`, (serial.length % 2 ? "0" : "") + serial + "\n");
  await Deno.writeTextFile(
    `${dir}/${db}/ca.cnf`,
    `[ca]\ndefault_ca = d\n[d]\ndatabase = ${db}/index.txt\nnew_certs_dir = ${db}\nserial = ${db}/serial\n` +
      `default_md = sha256\npolicy = p\nunique_subject = no\n[p]\n`,
  );
  await openssl([
    "ca",
    "-batch",
    "-notext",
    "-preserveDN",
    "-config",
    `${db}/ca.cnf`,
    "-cert",
    signer.cert,
    "-keyfile",
    signer.key,
    "-in",
    `${file}.csr`,
    "-extfile",
    `${file}.ext`,
    "-startdate",
    asn1Time(notBefore),
    "-enddate",
    asn1Time(notAfter),
    "-out",
    `${file}.crt`,
  ], dir);
}

/** Creates a CA in a new temporary directory. */
export async function createPki(): Promise<Pki> {
  const dir = await Deno.makeTempDir({ prefix: "lite-apiserver-pki-" });
  const ca = await issue(dir, "ca", "/CN=test-cluster-ca", "basicConstraints=critical,CA:TRUE", null, 3650);
  const signer = { cert: ca.cert, key: ca.key };
  let n = 0;
  return {
    dir,
    caCert: ca.cert,
    caKey: ca.key,
    caPem: ca.certPem,
    server: (name, sans = []) =>
      issue(
        dir,
        `server-${name}-${++n}`,
        `/CN=${name}`,
        `subjectAltName=${["IP:127.0.0.1", "IP:::1", "DNS:localhost", ...sans].join(",")}\n` +
          "extendedKeyUsage=serverAuth\n",
        signer,
      ),
    client: (cn, groups = [], opts = {}) =>
      issue(
        dir,
        opts.name ?? `client-${cn.replace(/[^A-Za-z0-9]/g, "_")}-${++n}`,
        subject(cn, groups),
        "extendedKeyUsage=clientAuth\n",
        signer,
        opts.days ?? 365,
        opts,
      ),
    rogue: async (cn, groups = []) => {
      const rogueDir = `${dir}/rogue-${++n}`;
      await Deno.mkdir(rogueDir);
      return issue(rogueDir, "rogue", subject(cn, groups), "extendedKeyUsage=clientAuth", null);
    },
  };
}

/** A CA for one test: `await using pki = await scopedPki();` removes its directory when the test ends. */
export async function scopedPki(): Promise<Pki & AsyncDisposable> {
  const pki = await createPki();
  return { ...pki, [Symbol.asyncDispose]: () => Deno.remove(pki.dir, { recursive: true }) };
}
