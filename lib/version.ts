/** The release version, printed by `--version` and sent as the admin endpoints' build info. */
export const VERSION = "0.1.0";
