/**
 * Runs one attack of bench/attack.ts in a worker: its loops (TLS writes at full speed, thousands of
 * sockets) get a thread and an event loop of their own, away from the simulated apiserver, the
 * hostile upstream and kubelet's probes on the main thread.
 */
import { CASES, type Ctx } from "./attack.ts";

/** The worker's own global scope (the default lib types `self` as a window). */
const scope = self as unknown as {
  onmessage: (e: MessageEvent<{ name: string; ctx: Ctx }>) => void;
  postMessage(note: string): void;
};

scope.onmessage = async (e) => {
  const c = CASES.find((x) => x.name === e.data.name);
  let note: string;
  try {
    note = c ? await c.run(e.data.ctx) : `no case ${e.data.name}`;
  } catch (err) {
    note = `the attacker failed: ${(err as Error).message}`;
  }
  scope.postMessage(note);
};
