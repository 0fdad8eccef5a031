import { measureWatchPatching } from "./watch_patch.ts";
for (const b of ["sqlite","file"] as const) for (const n of [1000,5000]) console.log(await measureWatchPatching(b, n, b==="sqlite"?5000:500));
