import { isIPv6 } from "node:net";
import { RuleError } from "../errors.js";
import type { AppEnv } from "../model.js";

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
        "scrape go in the labels __scheme__ and __metrics_path__ (e.g. -d __scheme__=https -d __metrics_path__=/probe)"
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
