import { isIPv6 } from "node:net";
import { RuleError } from "../errors.js";
import type { AppEnv, Kind } from "../model.js";

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DNS_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
const ALL_NUMERIC = /^[0-9.]+$/;
const IPV4_OCTET = /^(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;
const PORT = /^[1-9][0-9]{0,4}$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * What the service appends to `<application>@<environment>` to name the files
 * of a pair (src/directory/naming.ts): the group, and its deadlines. Each has
 * a temporary twin while it is written, which adds `.<uint32>` (up to 11).
 */
export const DERIVED_SUFFIXES = [".json", ".expires"] as const;
export const TEMPORARY_SUFFIX_MAX_LENGTH = ".4294967295".length;

/**
 * File names are limited to 255 bytes (ext4, xfs, overlayfs, tmpfs), and every
 * name derived from a pair must fit, temporary twins included: so two
 * 128-character names cannot both be used at once. Names are ASCII, so
 * characters are bytes.
 */
export const MAX_COMBINED_NAME_LENGTH =
  255 - "@".length - Math.max(...DERIVED_SUFFIXES.map((suffix) => suffix.length)) - TEMPORARY_SUFFIX_MAX_LENGTH;

/** `<application>` and `<environment>`: these become file names, so nothing else reaches the disk. */
export function isValidName(name: string): boolean {
  return NAME.test(name);
}

/** Both names valid, and short enough together for every file derived from them. */
export function isValidPair(application: string, environment: string): boolean {
  return isValidName(application) && isValidName(environment) && application.length + environment.length <= MAX_COMBINED_NAME_LENGTH;
}

export function parseAppEnv(application: string, environment: string): AppEnv {
  for (const [what, value] of [["application", application], ["environment", environment]] as const) {
    if (!isValidName(value)) {
      throw new RuleError(
        400,
        `${what} ${JSON.stringify(value)} is not a valid name: use 1-128 characters from ` +
          "[A-Za-z0-9_.-], starting with a letter, digit or underscore",
      );
    }
  }
  if (application.length + environment.length > MAX_COMBINED_NAME_LENGTH) {
    throw new RuleError(
      400,
      `application and environment are ${application.length + environment.length} characters together, over the limit of ` +
        `${MAX_COMBINED_NAME_LENGTH}: they name the files <application>@<environment>.json and .expires (and their ` +
        "temporary twins), which must fit in the 255 bytes a file name may have; shorten one of them",
    );
  }
  return { application, environment };
}

function isIPv4(host: string): boolean {
  const octets = host.split(".");
  return octets.length === 4 && octets.every((octet) => IPV4_OCTET.test(octet));
}

function isDnsName(host: string): boolean {
  return host.length <= 253 && host.split(".").every((label) => DNS_LABEL.test(label));
}

function isValidPort(port: string): boolean {
  return PORT.test(port) && Number(port) <= 65535;
}

/**
 * Why `target` is not `host` or `host:port`, or undefined when it is.
 * All-digit hosts must be real IPv4 addresses: `10.0.0.256` is a typo, not a DNS name.
 */
export function targetProblem(target: string): string | undefined {
  let host = target;
  let port: string | undefined;
  if (target.startsWith("[")) {
    const close = target.indexOf("]");
    if (close < 0) return "an IPv6 address needs a closing bracket: [2001:db8::1]:9100";
    host = target.slice(1, close);
    const rest = target.slice(close + 1);
    if (!isIPv6(host)) return `${JSON.stringify(host)} is not an IPv6 address`;
    if (rest === "") return undefined;
    if (!rest.startsWith(":")) return "only :<port> may follow a bracketed IPv6 address";
    port = rest.slice(1);
  } else {
    const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(target);
    if (scheme !== null) {
      return (
        `a target is host or host:port, not a URL: drop "${scheme[0]}" and any path. The scheme and path of the ` +
        "scrape go in the labels __scheme__ and __metrics_path__ (e.g. -d __scheme__=https -d __metrics_path__=/probe). " +
        "To probe the URL with blackbox_exporter instead, register it at /<application>/<environment>/probes (docs/probes.md)"
      );
    }
    if (/[\s;]/.test(target)) return "it holds a space or a semicolon: separate targets with commas (targets=a:9100,b:9100)";
    const colons = target.split(":").length - 1;
    if (colons > 1) {
      return isIPv6(target)
        ? "put IPv6 addresses in brackets: [2001:db8::1]:9100"
        : `it has ${colons} colons; a target is host or host:port (an IPv6 address goes in brackets: [2001:db8::1]:9100)`;
    }
    if (colons === 1) [host, port] = target.split(":") as [string, string];
    const valid = ALL_NUMERIC.test(host) ? isIPv4(host) : isDnsName(host);
    if (!valid) {
      return `${JSON.stringify(host)} is not a DNS name or IPv4 address`;
    }
  }
  if (port !== undefined && !isValidPort(port)) {
    return `port ${JSON.stringify(port)} must be a number from 1 to 65535`;
  }
  return undefined;
}

/** Half of a surrogate pair on its own: not text Prometheus can keep (it stores U+FFFD instead). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `value` cannot be the value of label `name`, or undefined when it can. */
export function labelValueProblem(name: string, value: string): string | undefined {
  if (value === "") return `label ${JSON.stringify(name)} has an empty value; to remove a label, DELETE it`;
  if (LONE_SURROGATE.test(value)) return `label ${JSON.stringify(name)} holds half of a UTF-16 surrogate pair, which is not text; send valid Unicode`;
  // Prometheus scrapes over http or https only; anything else makes the target fail, and the page's link lie.
  if (name === "__scheme__" && value !== "http" && value !== "https") {
    return `label "__scheme__" is ${JSON.stringify(value)}; Prometheus scrapes with http or https only`;
  }
  return undefined;
}

export function labelNameProblem(name: string): string | undefined {
  if (!LABEL_NAME.test(name)) {
    return `label name ${JSON.stringify(name)} is not valid: use [a-zA-Z_][a-zA-Z0-9_]*`;
  }
  if (name === "__address__") {
    return 'label "__address__" is set by Prometheus from the target; list the address under targets instead';
  }
  return undefined;
}

/**
 * What a request may name: the file grammar above, without `__meta_*`. A file
 * that already holds one (an outside edit, a registration from before this
 * rule) still loads, so an upgrade never unregisters a group Prometheus scrapes.
 */
export function requestLabelNameProblem(name: string): string | undefined {
  const problem = labelNameProblem(name);
  if (problem !== undefined) return problem;
  if (name.startsWith("__meta_")) {
    return (
      `label ${JSON.stringify(name)} is reserved: Prometheus gives __meta_* labels to discovered targets ` +
      "(__meta_filepath, and this service's __meta_filesd_* in /-/http_sd), and the status endpoints rely on them; choose another name"
    );
  }
  return undefined;
}

/** The longest probe URL the service takes: what browsers, proxies and servers reliably carry. */
export const MAX_PROBE_URL_LENGTH = 2048;

/**
 * What a path or a query may hold as it is (RFC 3986: unreserved, sub-delims, `:`, `@`, `/`;
 * a query also `?`); anything else is percent-encoded, `%` followed by two hex digits.
 */
const PATH_CHARACTER = /[A-Za-z0-9\-._~!$&'()*+,;=:@/]/;
const QUERY_CHARACTER = /[A-Za-z0-9\-._~!$&'()*+,;=:@/?]/;
const PERCENT_ENCODED = /^%[0-9A-Fa-f]{2}/;

/**
 * Why `target` is not a probe target, or undefined when it is. A probe target is
 * - an `http://` or `https://` URL: the scheme in lowercase, a host as a scrape target's (a DNS
 *   name, an IPv4 address or a bracketed IPv6 address), an optional port, path and query; no
 *   userinfo (credentials would sit in a world-readable file and in the `instance` label: they
 *   belong in blackbox_exporter's module), no fragment (never sent to the server); at most
 *   MAX_PROBE_URL_LENGTH characters, all ASCII (anything else percent-encoded);
 * - or `host[:port]`, as a scrape target, for the tcp, icmp and dns modules.
 * Each message starts with the part that is wrong: scheme, userinfo, host, port, path, query,
 * fragment or length.
 */
export function probeTargetProblem(target: string): string | undefined {
  const schemeEnd = target.indexOf("://");
  if (schemeEnd < 0) {
    if (/[/?#]/.test(target)) {
      return "scheme: a target with a path or query is a URL and needs its scheme, http:// or https:// (e.g. https://billing.example.com/health)";
    }
    return targetProblem(target);
  }
  if (target.length > MAX_PROBE_URL_LENGTH) {
    return `length: ${target.length} characters, over the limit of ${MAX_PROBE_URL_LENGTH}; shorten the path or query`;
  }
  const scheme = target.slice(0, schemeEnd);
  if (scheme !== "http" && scheme !== "https") {
    const lower = scheme.toLowerCase();
    return lower === "http" || lower === "https"
      ? `scheme ${JSON.stringify(scheme)}: write it in lowercase, ${lower}://`
      : `scheme ${JSON.stringify(scheme)}: a probe URL is http:// or https://; for tcp, icmp and dns modules give host or host:port without a scheme`;
  }
  const rest = target.slice(schemeEnd + 3);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const afterAuthority = authorityEnd < 0 ? "" : rest.slice(authorityEnd);
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    return (
      `userinfo ${JSON.stringify(authority.slice(0, at + 1))}: credentials are not taken in a probe URL (they would be in a ` +
      "world-readable file and in the instance label); set them in blackbox_exporter's module (http: basic_auth:)"
    );
  }
  const hostProblem = authorityProblem(authority);
  if (hostProblem !== undefined) return hostProblem;
  const hash = afterAuthority.indexOf("#");
  if (hash >= 0) {
    return `fragment ${JSON.stringify(afterAuthority.slice(hash))}: a fragment is never sent to the server, so it cannot change the probe; drop it`;
  }
  const question = afterAuthority.indexOf("?");
  const path = question < 0 ? afterAuthority : afterAuthority.slice(0, question);
  const query = question < 0 ? undefined : afterAuthority.slice(question + 1);
  return encodingProblem("path", path, PATH_CHARACTER) ?? (query === undefined ? undefined : encodingProblem("query", query, QUERY_CHARACTER));
}

/** `host[:port]` of a URL, each part named when it is wrong. */
function authorityProblem(authority: string): string | undefined {
  let host = authority;
  let port: string | undefined;
  if (authority === "") return "host: missing; a probe URL is http(s)://host[:port][/path][?query]";
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) return `host ${JSON.stringify(authority)}: an IPv6 address needs a closing bracket, e.g. http://[2001:db8::1]:8080/`;
    host = authority.slice(1, close);
    if (!isIPv6(host) || host.includes("%")) return `host ${JSON.stringify(authority.slice(0, close + 1))}: not an IPv6 address (zone ids are not taken)`;
    const rest = authority.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) return `port: only :<port> may follow a bracketed IPv6 address, not ${JSON.stringify(rest)}`;
    if (rest !== "") port = rest.slice(1);
  } else {
    const colons = authority.split(":").length - 1;
    if (colons > 1) return `host ${JSON.stringify(authority)}: put an IPv6 address in brackets, e.g. http://[2001:db8::1]:8080/`;
    if (colons === 1) [host, port] = authority.split(":") as [string, string];
    const valid = ALL_NUMERIC.test(host) ? isIPv4(host) : isDnsName(host);
    if (!valid) return `host ${JSON.stringify(host)}: not a DNS name or IPv4 address (non-ASCII names go in their xn-- form)`;
  }
  if (port !== undefined && !isValidPort(port)) return `port ${JSON.stringify(port)}: must be a number from 1 to 65535`;
  return undefined;
}

/** The first character of `text` that must be percent-encoded, or a broken `%`, named with its part. */
function encodingProblem(part: "path" | "query", text: string, allowed: RegExp): string | undefined {
  for (let i = 0; i < text.length; ) {
    const character = String.fromCodePoint(text.codePointAt(i) ?? 0);
    if (character === "%") {
      if (!PERCENT_ENCODED.test(text.slice(i))) {
        return `${part} ${JSON.stringify(text)}: "${text.slice(i, i + 3)}" is not a percent-encoding (% and two hex digits); write a % itself as %25`;
      }
      i += 3;
      continue;
    }
    if (!allowed.test(character)) {
      const encoded = [...new TextEncoder().encode(character)].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`).join("");
      return `${part} ${JSON.stringify(text)}: ${JSON.stringify(character)} must be percent-encoded, as ${encoded}`;
    }
    i += character.length;
  }
  return undefined;
}

/** The grammar of a group's targets: the kind decides. */
export function targetProblemOf(kind: Kind): (target: string) => string | undefined {
  return kind === "probes" ? probeTargetProblem : targetProblem;
}
