/** Certificate loading, validation and live reload: the public surface of lib/certs. */
export {
  type ClientPair,
  EXPIRY_WARNING_DAYS,
  loadPair,
  loadTlsConfig,
  type PairEntry,
  parseTlsConfig,
} from "./client_pairs.ts";
export { certCommonName } from "./pem.ts";
export { ClientPairWatcher, type ClientPairWatcherOptions, type PairStatus } from "./client_watcher.ts";
export {
  loadServingMaterial,
  type ServingMaterial,
  ServingWatcher,
  type ServingWatcherOptions,
} from "./serving.ts";
