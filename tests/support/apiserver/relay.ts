/**
 * A byte relay in front of the TLS server that can black-hole or refuse traffic, like toxiproxy.
 */
import * as net from "node:net";

/** Fault modes: pass bytes, freeze everything, or stop listening. */
export type FaultMode = "none" | "blackhole" | "refuse";

interface Pair {
  client: net.Socket;
  upstream?: net.Socket;
  frozen: boolean;
}

/** The relay. */
export class FaultRelay {
  private server?: net.Server;
  private pairs = new Set<Pair>();
  private mode: FaultMode = "none";
  port = 0;
  /** TCP connections accepted so far (the cloud connections a proxy opened). */
  accepted = 0;

  /** TCP connections open now. */
  get open(): number {
    return this.pairs.size;
  }

  constructor(private readonly targetPort: number) {}

  private listen(port: number): Promise<void> {
    const server = net.createServer((c) => this.accept(c));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  /** Starts listening (port 0 = random). */
  start(port = 0): Promise<void> {
    return this.listen(port);
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    const pair: Pair = { client, frozen: this.mode === "blackhole" };
    this.pairs.add(pair);
    const drop = () => this.drop(pair);
    client.on("error", drop);
    client.on("close", drop);
    if (pair.frozen) {
      client.pause();
      return;
    }
    const upstream = net.connect(this.targetPort, "127.0.0.1");
    pair.upstream = upstream;
    upstream.on("error", drop);
    upstream.on("close", drop);
    const wire = (from: net.Socket, to: net.Socket) => {
      from.on("data", (d) => {
        if (pair.frozen) return;
        if (!to.write(d)) from.pause();
      });
      to.on("drain", () => {
        if (!pair.frozen) from.resume();
      });
    };
    wire(client, upstream);
    wire(upstream, client);
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }

  private closeServer(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return Promise.resolve();
    return new Promise((resolve) => s.close(() => resolve()));
  }

  /** Switches the fault mode. */
  async setMode(mode: FaultMode): Promise<void> {
    const prev = this.mode;
    this.mode = mode;
    if (mode === "blackhole") {
      for (const p of this.pairs) {
        p.frozen = true;
        p.client.pause();
        p.upstream?.pause();
      }
      if (!this.server) await this.listen(this.port);
    } else if (mode === "refuse") {
      for (const p of [...this.pairs]) this.drop(p);
      await this.closeServer();
    } else {
      for (const p of [...this.pairs]) if (p.frozen) this.drop(p);
      if (!this.server || prev === "refuse") await this.listen(this.port);
    }
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const p of [...this.pairs]) this.drop(p);
    await this.closeServer();
  }
}
