/**
 * Kubernetes label and field selectors: parse, match, and normalise to a canonical string.
 *
 * Grammar and validation follow k8s.io/apimachinery pkg/labels/selector.go and pkg/fields/selector.go.
 * The cache keys lists by the normalised strings and filters a broader cached list by matching
 * each item with the parsed selectors of the narrower request.
 */

/** A selector the apiserver would reject; `message` reads well inside a 400 Status. */
export class SelectorError extends Error {
  override name = "SelectorError";
}

// ---------------------------------------------------------------------------------------------
// Label selectors

/** Canonical operators: `==` parses as `=`, `in (x)` as `= x`, `notin (x)` as `!= x`. */
export type LabelOperator = "=" | "!=" | "in" | "notin" | "exists" | "!" | ">" | "<";

export interface LabelRequirement {
  key: string;
  op: LabelOperator;
  /** Sorted and de-duplicated; one value for `=`, `!=`, `>`, `<`; none for `exists` and `!`. */
  values: string[];
}

/** A parsed label selector: all requirements must hold. No requirements matches everything. */
export interface LabelSelector {
  requirements: LabelRequirement[];
}

type TokKind =
  | "ident"
  | "="
  | "=="
  | "!="
  | "!"
  | ">"
  | "<"
  | "("
  | ")"
  | ","
  | "in"
  | "notin"
  | "eos";

interface Token {
  kind: TokKind;
  text: string;
}

const SPECIAL = new Set(["=", "!", "(", ")", ",", ">", "<"]);
const WHITESPACE = new Set([" ", "\t", "\r", "\n"]);

function lex(input: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const c = input[i];
    if (WHITESPACE.has(c)) {
      i++;
      continue;
    }
    if (SPECIAL.has(c)) {
      const two = input.slice(i, i + 2);
      if (two === "==" || two === "!=") {
        out.push({ kind: two, text: two });
        i += 2;
      } else {
        out.push({ kind: c as TokKind, text: c });
        i++;
      }
      continue;
    }
    let j = i;
    while (j < input.length && !SPECIAL.has(input[j]) && !WHITESPACE.has(input[j])) j++;
    const text = input.slice(i, j);
    out.push({ kind: text === "in" || text === "notin" ? text : "ident", text });
    i = j;
  }
  out.push({ kind: "eos", text: "" });
  return out;
}

const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function validateKey(key: string): void {
  const slash = key.indexOf("/");
  const prefix = slash < 0 ? "" : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0 && (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    throw new SelectorError(`invalid label key "${key}": prefix must be a DNS-1123 subdomain`);
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    throw new SelectorError(
      `invalid label key "${key}": name part must be 63 characters or less, consist of alphanumeric ` +
        `characters, '-', '_' or '.', and start and end with an alphanumeric character`,
    );
  }
}

function validateValue(value: string): void {
  if (value === "") return;
  if (value.length > 63 || !LABEL_NAME.test(value)) {
    throw new SelectorError(
      `invalid label value "${value}": must be 63 characters or less, consist of alphanumeric ` +
        `characters, '-', '_' or '.', and start and end with an alphanumeric character`,
    );
  }
}

const INTEGER = /^[+-]?[0-9]+$/;

function sortedUnique(values: string[]): string[] {
  return [...new Set(values)].sort(compare);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

class LabelParser {
  private pos = 0;
  constructor(private readonly toks: Token[], private readonly input: string) {}

  /** Peeks; inside a value list, `in` and `notin` are plain identifiers. */
  private peek(values = false): Token {
    const t = this.toks[this.pos];
    return values && (t.kind === "in" || t.kind === "notin") ? { kind: "ident", text: t.text } : t;
  }

  private next(values = false): Token {
    const t = this.peek(values);
    if (t.kind !== "eos") this.pos++;
    return t;
  }

  private fail(msg: string): never {
    throw new SelectorError(`unable to parse label selector "${this.input}": ${msg}`);
  }

  parse(): LabelRequirement[] {
    const reqs: LabelRequirement[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === "eos") return reqs;
      if (t.kind !== "ident" && t.kind !== "!") {
        this.fail(`found '${t.text}', expected: !, identifier, or 'end of string'`);
      }
      reqs.push(this.requirement());
      const after = this.next(true);
      if (after.kind === "eos") return reqs;
      if (after.kind !== ",") this.fail(`found '${after.text}', expected: ',' or 'end of string'`);
      const t2 = this.peek();
      if (t2.kind !== "ident" && t2.kind !== "!") {
        this.fail(`found '${t2.text}', expected: identifier after ','`);
      }
    }
  }

  private requirement(): LabelRequirement {
    let negated = false;
    if (this.peek().kind === "!") {
      this.next();
      negated = true;
    }
    const keyTok = this.next();
    if (keyTok.kind !== "ident") this.fail(`found '${keyTok.text}', expected: identifier`);
    const key = keyTok.text;
    validateKey(key);
    const look = this.peek();
    if (look.kind === "eos" || look.kind === ",") {
      return { key, op: negated ? "!" : "exists", values: [] };
    }
    if (negated) this.fail(`found '${look.text}', expected: ',' or 'end of string' after '!${key}'`);

    const opTok = this.next();
    switch (opTok.kind) {
      case "in":
      case "notin": {
        const values = sortedUnique(this.valueList());
        values.forEach(validateValue);
        if (values.length === 1) return { key, op: opTok.kind === "in" ? "=" : "!=", values };
        return { key, op: opTok.kind, values };
      }
      case "=":
      case "==":
      case "!=": {
        const value = this.exactValue();
        validateValue(value);
        return { key, op: opTok.kind === "!=" ? "!=" : "=", values: [value] };
      }
      case ">":
      case "<": {
        const value = this.exactValue();
        if (!INTEGER.test(value)) {
          this.fail(`for '${opTok.kind}' the value must be an integer, got '${value}'`);
        }
        return { key, op: opTok.kind, values: [String(BigInt(value))] };
      }
      default:
        this.fail(`found '${opTok.text}', expected: '=', '!=', '==', 'in', 'notin', '>' or '<'`);
    }
  }

  /** A value after `=`, `!=`...: empty when the requirement ends right there. */
  private exactValue(): string {
    const t = this.peek(true);
    if (t.kind === "eos" || t.kind === ",") return "";
    if (t.kind !== "ident") this.fail(`found '${t.text}', expected: identifier`);
    this.next(true);
    return t.text;
  }

  /** `( v1, v2 )`; empty entries are the empty value, as in the apiserver (`()` means `("")`). */
  private valueList(): string[] {
    const open = this.next();
    if (open.kind !== "(") this.fail(`found '${open.text}', expected: '('`);
    const values: string[] = [];
    let expectValue = true;
    for (;;) {
      const t = this.next(true);
      if (t.kind === "ident") {
        if (!expectValue) this.fail(`found '${t.text}', expected: ',' or ')'`);
        values.push(t.text);
        expectValue = false;
      } else if (t.kind === ",") {
        if (expectValue) values.push("");
        expectValue = true;
      } else if (t.kind === ")") {
        if (expectValue) values.push("");
        return values;
      } else {
        this.fail(`found '${t.text}', expected: ',', ')' or identifier`);
      }
    }
  }
}

const OP_ORDER: Record<LabelOperator, number> = {
  "exists": 0,
  "!": 1,
  "=": 2,
  "!=": 3,
  "in": 4,
  "notin": 5,
  ">": 6,
  "<": 7,
};

function compareRequirements(a: LabelRequirement, b: LabelRequirement): number {
  return compare(a.key, b.key) || OP_ORDER[a.op] - OP_ORDER[b.op] ||
    compare(a.values.join(","), b.values.join(","));
}

/** Parses a label selector; "" (or only whitespace) matches everything. Throws SelectorError. */
export function parseLabelSelector(s: string): LabelSelector {
  const requirements = new LabelParser(lex(s), s).parse();
  return { requirements };
}

/** True when `labels` (an object's metadata.labels, possibly absent) satisfy the selector. */
export function matchLabels(
  sel: LabelSelector | string,
  labels: Record<string, string> | undefined | null,
): boolean {
  const parsed = typeof sel === "string" ? parseLabelSelector(sel) : sel;
  const l = labels ?? {};
  return parsed.requirements.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = has ? String(l[r.key]) : undefined;
    switch (r.op) {
      case "exists":
        return has;
      case "!":
        return !has;
      case "=":
      case "in":
        return has && r.values.includes(v!);
      case "!=":
      case "notin":
        return !has || !r.values.includes(v!);
      case ">":
      case "<": {
        if (!has || !INTEGER.test(v!)) return false;
        const a = BigInt(v!), b = BigInt(r.values[0]);
        return r.op === ">" ? a > b : a < b;
      }
    }
  });
}

function formatRequirement(r: LabelRequirement): string {
  switch (r.op) {
    case "exists":
      return r.key;
    case "!":
      return `!${r.key}`;
    case "in":
    case "notin":
      return `${r.key} ${r.op} (${r.values.join(",")})`;
    default:
      return `${r.key}${r.op}${r.values[0]}`;
  }
}

/** The canonical string of a parsed label selector (sorted, de-duplicated, re-parseable). */
export function formatLabelSelector(sel: LabelSelector): string {
  const parts = [...sel.requirements].sort(compareRequirements).map(formatRequirement);
  return [...new Set(parts)].join(",");
}

/**
 * A canonical string: semantically equal selectors give the same string; "" for none.
 * Requirements sorted, set values sorted and de-duplicated, `==` → `=`, single-value `in`/`notin` →
 * `=`/`!=`, no incidental whitespace (only the single spaces `in`/`notin` need). Throws SelectorError.
 */
export function normaliseLabelSelector(s: string): string {
  return formatLabelSelector(parseLabelSelector(s));
}

// ---------------------------------------------------------------------------------------------
// Field selectors

export interface FieldRequirement {
  /** A dotted path, e.g. `metadata.name`, `spec.nodeName`. */
  key: string;
  op: "=" | "!=";
  /** Unescaped. */
  value: string;
}

/** A parsed field selector: all requirements must hold. No requirements matches everything. */
export interface FieldSelector {
  requirements: FieldRequirement[];
}

/** Splits on commas that are not escaped with a backslash. */
function splitTerms(s: string): string[] {
  const terms: string[] = [];
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\") i++;
    else if (s[i] === ",") {
      terms.push(s.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(s.slice(start));
  return terms;
}

function splitTerm(term: string): { lhs: string; op: "=" | "!="; rhs: string } | undefined {
  for (let i = 0; i < term.length; i++) {
    if (term[i] === "\\") {
      i++;
      continue;
    }
    for (const op of ["!=", "==", "="] as const) {
      if (term.startsWith(op, i)) {
        return { lhs: term.slice(0, i), op: op === "!=" ? "!=" : "=", rhs: term.slice(i + op.length) };
      }
    }
  }
  return undefined;
}

function unescapeValue(v: string, selector: string): string {
  let out = "";
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c === "\\") {
      const n = v[i + 1];
      if (n !== "\\" && n !== "," && n !== "=") {
        throw new SelectorError(`invalid field selector "${selector}": invalid escape sequence in "${v}"`);
      }
      out += n;
      i++;
    } else if (c === "," || c === "=") {
      throw new SelectorError(`invalid field selector "${selector}": unescaped '${c}' in value "${v}"`);
    } else {
      out += c;
    }
  }
  return out;
}

/** Escapes `\`, `,` and `=` in a field selector value. */
export function escapeFieldValue(v: string): string {
  return v.replace(/[\\,=]/g, (c) => "\\" + c);
}

/**
 * The field selector of a request naming one object (a named watch, or a GET answered from a
 * list): the request's own field selector plus `metadata.name=<name>`. Without a name, the field
 * selector as given.
 */
export function namedFieldSelector(fieldSelector: string, name: string): string {
  if (name === "") return fieldSelector;
  const byName = `metadata.name=${escapeFieldValue(name)}`;
  return fieldSelector.trim() === "" ? byName : `${fieldSelector},${byName}`;
}

/** Parses a field selector; "" matches everything. Throws SelectorError. */
export function parseFieldSelector(s: string): FieldSelector {
  const requirements: FieldRequirement[] = [];
  for (const term of splitTerms(s)) {
    if (term.trim() === "") continue;
    const parts = splitTerm(term);
    if (!parts) throw new SelectorError(`invalid field selector "${s}": can't understand "${term}"`);
    const key = parts.lhs.trim();
    if (key === "" || /\s/.test(key)) {
      throw new SelectorError(`invalid field selector "${s}": invalid field name in "${term}"`);
    }
    requirements.push({ key, op: parts.op, value: unescapeValue(parts.rhs, s) });
  }
  return { requirements };
}

/**
 * The value of a dotted path as the apiserver's field sets show it: strings as is, numbers and
 * booleans as text, anything absent or not a scalar as "".
 */
export function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const step of path.split(".")) {
    if (cur === null || typeof cur !== "object" || Array.isArray(cur)) return "";
    cur = (cur as Record<string, unknown>)[step];
  }
  if (typeof cur === "string") return cur;
  if (typeof cur === "number" || typeof cur === "boolean" || typeof cur === "bigint") return String(cur);
  return "";
}

/** True when the object's fields satisfy the selector. */
export function matchFields(sel: FieldSelector | string, obj: unknown): boolean {
  const parsed = typeof sel === "string" ? parseFieldSelector(sel) : sel;
  return parsed.requirements.every((r) => (fieldValue(obj, r.key) === r.value) === (r.op === "="));
}

/** The value the selector requires `field` to equal exactly (e.g. `metadata.name`), if it does. */
export function requiredFieldValue(sel: FieldSelector, field: string): string | undefined {
  const eq = sel.requirements.filter((r) => r.key === field && r.op === "=");
  return eq.length === 1 ? eq[0].value : undefined;
}

/** The canonical string of a parsed field selector. */
export function formatFieldSelector(sel: FieldSelector): string {
  const terms = sel.requirements.map((r) => `${r.key}${r.op}${escapeFieldValue(r.value)}`).sort(compare);
  return [...new Set(terms)].join(",");
}

/** A canonical string (terms sorted and de-duplicated, `==` → `=`, keys trimmed); "" for none. */
export function normaliseFieldSelector(s: string): string {
  return formatFieldSelector(parseFieldSelector(s));
}

/** True when the selector holds only `metadata.*` fields (answerable from PartialObjectMetadata). */
export function fieldSelectorIsMetadataOnly(sel: FieldSelector): boolean {
  return sel.requirements.every((r) => r.key === "metadata.name" || r.key === "metadata.namespace");
}
