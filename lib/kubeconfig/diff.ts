/**
 * A minimal unified diff (LCS over lines) for `--dry-run` output. Lines holding secrets
 * (keys, tokens, passwords) are redacted so a dry run never prints credentials.
 */

const SECRET_LINE = /^(\s*-?\s*)(client-key-data|token|password|client-certificate-data)(\s*:\s*)(.+)$/;

/** Replaces the value of credential lines with a placeholder. */
export function redactLine(line: string): string {
  const m = SECRET_LINE.exec(line);
  return m ? `${m[1]}${m[2]}${m[3]}<redacted>` : line;
}

type Op = { kind: " " | "-" | "+"; line: string };

function splitLines(text: string): string[] {
  if (text === "") return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

function diffOps(a: string[], b: string[]): Op[] {
  // Trim the common head and tail first: edits here touch one or two lines of a small file.
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (
    tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]
  ) {
    tail++;
  }
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const n = am.length, m = bm.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = am[i] === bm[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const ops: Op[] = a.slice(0, head).map((line) => ({ kind: " ", line }));
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && am[i] === bm[j]) {
      ops.push({ kind: " ", line: am[i] });
      i++, j++;
    } else if (i < n && (j >= m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      ops.push({ kind: "-", line: am[i++] });
    } else {
      ops.push({ kind: "+", line: bm[j++] });
    }
  }
  for (const line of a.slice(a.length - tail)) ops.push({ kind: " ", line });
  return ops;
}

/**
 * A unified diff of `before` → `after` (null = file absent), with `context` lines around changes.
 * Returns "" when the texts are equal.
 */
export function unifiedDiff(path: string, before: string | null, after: string | null, context = 3): string {
  if (before === after) return "";
  const ops = diffOps(splitLines(before ?? ""), splitLines(after ?? ""));
  const out = [
    `--- ${before === null ? "/dev/null" : `a${path}`}`,
    `+++ ${after === null ? "/dev/null" : `b${path}`}`,
  ];
  let k = 0;
  while (k < ops.length) {
    if (ops[k].kind === " ") {
      k++;
      continue;
    }
    // Grow a hunk from this change until `2 * context` unchanged lines separate it from the next.
    const start = Math.max(0, k - context);
    let end = k;
    let gap = 0;
    for (let x = k; x < ops.length; x++) {
      if (ops[x].kind === " ") {
        gap++;
        if (gap > 2 * context) break;
      } else {
        gap = 0;
        end = x;
      }
    }
    const stop = Math.min(ops.length, end + context + 1);
    let oldStart = 1, newStart = 1;
    for (let x = 0; x < start; x++) {
      if (ops[x].kind !== "+") oldStart++;
      if (ops[x].kind !== "-") newStart++;
    }
    const hunk = ops.slice(start, stop);
    const oldLen = hunk.filter((o) => o.kind !== "+").length;
    const newLen = hunk.filter((o) => o.kind !== "-").length;
    out.push(
      `@@ -${oldLen ? oldStart : oldStart - 1},${oldLen} +${newLen ? newStart : newStart - 1},${newLen} @@`,
    );
    for (const o of hunk) out.push(o.kind + redactLine(o.line));
    k = stop;
  }
  return out.join("\n") + "\n";
}
