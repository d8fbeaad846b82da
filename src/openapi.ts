import { META_LABELS } from "./handlers/http-sd.js";
import { SUPPORTED_MEDIA_TYPES } from "./parse/body.js";

/**
 * The OpenAPI 3 description served at `/-/openapi.json`. A test walks the
 * router and this document both ways, so a route cannot be added to one and
 * forgotten in the other.
 */

type Schema =
  | { readonly $ref: string }
  | {
      readonly type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
      readonly nullable?: boolean;
      readonly description?: string;
      readonly format?: string;
      readonly pattern?: string;
      readonly minLength?: number;
      readonly maxLength?: number;
      readonly minItems?: number;
      readonly enum?: readonly string[];
      readonly example?: unknown;
      readonly items?: Schema;
      readonly properties?: Readonly<Record<string, Schema>>;
      readonly required?: readonly string[];
      readonly additionalProperties?: Schema | boolean;
    };

interface MediaType {
  readonly schema: Schema;
  readonly example?: unknown;
}

interface Response {
  readonly description: string;
  readonly headers?: Readonly<Record<string, { readonly description: string; readonly schema: Schema }>>;
  readonly content?: Readonly<Record<string, MediaType>>;
}

interface Parameter {
  readonly name: string;
  readonly in: "path" | "query" | "header";
  readonly description: string;
  readonly required?: boolean;
  readonly schema: Schema;
  readonly style?: "form";
  readonly explode?: boolean;
}

interface Operation {
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags: readonly string[];
  readonly parameters?: readonly (Parameter | { readonly $ref: string })[];
  readonly requestBody?: { readonly description: string; readonly required: boolean; readonly content: Readonly<Record<string, MediaType>> };
  readonly responses: Readonly<Record<string, Response | { readonly $ref: string }>>;
  readonly security?: readonly SecurityRequirement[];
}

export type HttpMethod = "get" | "put" | "post" | "delete";

type PathItem = Partial<Record<HttpMethod, Operation>>;

export interface OpenApiDocument {
  readonly openapi: "3.0.3";
  readonly info: { readonly title: string; readonly version: string; readonly description: string };
  readonly tags: readonly { readonly name: string; readonly description: string }[];
  readonly paths: Readonly<Record<string, PathItem>>;
  readonly components: {
    readonly schemas: Readonly<Record<string, Schema>>;
    readonly parameters: Readonly<Record<string, Parameter>>;
    readonly responses: Readonly<Record<string, Response>>;
    readonly securitySchemes: Readonly<Record<string, { readonly type: "http"; readonly scheme: "bearer"; readonly description: string }>>;
  };
}

const ref = (kind: "schemas" | "parameters" | "responses", name: string) => ({ $ref: `#/components/${kind}/${name}` });
const json = (schema: Schema, example?: unknown): Readonly<Record<string, MediaType>> => ({
  "application/json": example === undefined ? { schema } : { schema, example },
});

const NAME: Schema = {
  type: "string",
  pattern: "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
  minLength: 1,
  maxLength: 128,
};

/** Without AUTH_TOKENS_FILE nothing needs a token; with it, writes do, and reads when it says `read: token`. */
type SecurityRequirement = Readonly<Record<string, readonly string[]>>;
const WRITE_SECURITY: readonly SecurityRequirement[] = [{ bearer: [] }, {}];
const READ_SECURITY: readonly SecurityRequirement[] = [{}, { bearer: [] }];

const ETAG_HEADER = {
  ETag: {
    description: "Strong; from the group file's bytes, the same on every instance. Absent when nothing is (left) registered.",
    schema: { type: "string" },
  },
} as const;

const GROUP_RESPONSES = {
  "200": { description: "The group: `[]` when nothing is registered.", headers: ETAG_HEADER, content: json(ref("schemas", "GroupFile")) },
  "400": ref("responses", "BadRequest"),
  "401": ref("responses", "Unauthorized"),
} as const;

const WRITE_RESPONSES = {
  ...GROUP_RESPONSES,
  "200": {
    description: "The group after the change, on disk before this answer (etcd mode: committed in etcd and in this instance's directory).",
    headers: ETAG_HEADER,
    content: json(ref("schemas", "GroupFile")),
  },
  "403": ref("responses", "Forbidden"),
  "404": ref("responses", "NotFound"),
  "412": ref("responses", "PreconditionFailed"),
  "413": { description: "The body is larger than MAX_BODY_BYTES.", content: json(ref("schemas", "Error")) },
  "415": { description: "The Content-Type is not JSON, YAML or a form.", content: json(ref("schemas", "Error")) },
  "500": { description: "The disk refused the write; nothing changed.", content: json(ref("schemas", "Error")) },
  "503": {
    description: "etcd mode: etcd is unreachable or without quorum, or the group kept changing under the request; not acknowledged, try again.",
    content: json(ref("schemas", "Error")),
  },
} as const;

const CHANGE_BODY = {
  description: "`targets` and/or `labels`, as JSON, YAML or a form (`curl -d targets=host:9100 -d team=core`).",
  required: false,
  content: Object.fromEntries(
    SUPPORTED_MEDIA_TYPES.map((type) => [
      type,
      { schema: type === "application/x-www-form-urlencoded" ? ref("schemas", "ChangeForm") : ref("schemas", "Change") },
    ]),
  ),
};

const PROBE_CHANGE_BODY = {
  ...CHANGE_BODY,
  description:
    "`targets` (http:// or https:// URLs of at most 2,048 characters, or host[:port] for tcp, icmp and dns modules) and/or " +
    "`labels` (the module too: `__param_module=http_2xx`), as JSON, YAML or a form. In a form a `targets` field that starts " +
    "with a URL is one URL, commas included; give several URLs as several fields.",
};

const PROBES_DESCRIPTION =
  "Every rule of /{application}/{environment} holds (bodies, job and env defaults, all-or-nothing, ?ttl=, ETag and " +
  "If-Match, tokens: one that may change an application may change its probes). A URL is stored exactly as sent; it " +
  "may have a port, a path and a query, never userinfo or a fragment.";

const GROUP_PARAMETERS = [ref("parameters", "application"), ref("parameters", "environment")];
const CONDITIONS = [ref("parameters", "ifMatch"), ref("parameters", "ifNoneMatch")];
const WRITE_PARAMETERS = [...GROUP_PARAMETERS, ref("parameters", "ttl"), ...CONDITIONS];
const FILTER_PARAMETERS = [ref("parameters", "applicationFilter"), ref("parameters", "environmentFilter")];

export const OPENAPI: OpenApiDocument = {
  openapi: "3.0.3",
  info: {
    title: "file_sd writer",
    version: "1",
    description:
      "Register Prometheus scrape targets with curl; the service keeps one file_sd JSON file per " +
      "application/environment. Every GET also answers HEAD. Every answer is JSON except /metrics. " +
      "Errors are `{\"message\": …}`.",
  },
  tags: [
    { name: "groups", description: "Targets and labels of one application/environment." },
    {
      name: "probes",
      description:
        "URLs and hosts for blackbox_exporter: one probe group per application/environment, in probes/ beside the scrape groups, with the same rules.",
    },
    { name: "discovery", description: "Everything registered, for people and for Prometheus." },
    { name: "status", description: "Is it scraped? What each Prometheus in PROMETHEUS_URL says of each target." },
    { name: "operations", description: "Health, readiness, metrics and this description." },
  ],
  paths: {
    "/{application}/{environment}": {
      get: {
        operationId: "getGroup",
        summary: "The group as Prometheus reads it from <application>@<environment>.json",
        tags: ["groups"],
        parameters: GROUP_PARAMETERS,
        responses: GROUP_RESPONSES,
        security: READ_SECURITY,
      },
      put: {
        operationId: "putGroup",
        summary: "Replace the targets and/or the labels",
        tags: ["groups"],
        parameters: WRITE_PARAMETERS,
        requestBody: CHANGE_BODY,
        responses: WRITE_RESPONSES,
        security: WRITE_SECURITY,
      },
      post: {
        operationId: "postGroup",
        summary: "Add targets and/or add or change labels",
        tags: ["groups"],
        parameters: WRITE_PARAMETERS,
        requestBody: CHANGE_BODY,
        responses: WRITE_RESPONSES,
        security: WRITE_SECURITY,
      },
      delete: {
        operationId: "deleteGroup",
        summary: "Remove targets or labels; without a body, the whole group and its file",
        tags: ["groups"],
        parameters: [...GROUP_PARAMETERS, ...CONDITIONS],
        requestBody: CHANGE_BODY,
        responses: WRITE_RESPONSES,
        security: WRITE_SECURITY,
      },
    },
    "/{application}/{environment}/probes": {
      get: {
        operationId: "getProbes",
        summary: "The probe group as Prometheus reads it from probes/<application>@<environment>.json",
        description: PROBES_DESCRIPTION,
        tags: ["probes"],
        parameters: GROUP_PARAMETERS,
        responses: GROUP_RESPONSES,
        security: READ_SECURITY,
      },
      put: {
        operationId: "putProbes",
        summary: "Replace the probed URLs and hosts and/or the labels",
        tags: ["probes"],
        parameters: WRITE_PARAMETERS,
        requestBody: PROBE_CHANGE_BODY,
        responses: WRITE_RESPONSES,
        security: WRITE_SECURITY,
      },
      post: {
        operationId: "postProbes",
        summary: "Add URLs or hosts to probe and/or add or change labels",
        tags: ["probes"],
        parameters: WRITE_PARAMETERS,
        requestBody: PROBE_CHANGE_BODY,
        responses: WRITE_RESPONSES,
        security: WRITE_SECURITY,
      },
      delete: {
        operationId: "deleteProbes",
        summary: "Remove URLs, hosts or labels; without a body, the whole probe group and its file",
        tags: ["probes"],
        parameters: [...GROUP_PARAMETERS, ...CONDITIONS],
        requestBody: PROBE_CHANGE_BODY,
        responses: WRITE_RESPONSES,
        security: WRITE_SECURITY,
      },
    },
    "/": {
      get: {
        operationId: "index",
        summary: "Everything registered: file name, target count, labels and last change per application/environment, scrape groups and probe groups apart",
        tags: ["discovery"],
        parameters: [...FILTER_PARAMETERS, ref("parameters", "pageFilter")],
        responses: {
          "200": {
            description:
              "Sorted by application, then environment. A client that ranks text/html above application/json " +
              "(a browser) gets the page instead: every group with its targets, labels and health, kept current.",
            content: { ...json(ref("schemas", "Index")), "text/html": { schema: { type: "string" } } },
          },
          "400": ref("responses", "BadRequest"),
          "401": ref("responses", "Unauthorized"),
        },
        security: READ_SECURITY,
      },
    },
    "/-/http_sd": {
      get: {
        operationId: "httpSd",
        summary: "Every group in Prometheus' http_sd format, for http_sd_configs; ?kind=probes: every probe group",
        description:
          `Each group carries its labels plus ${META_LABELS.application}, ${META_LABELS.environment} and ` +
          `${META_LABELS.file} (probes/… for a probe group); Prometheus drops __meta_ labels after relabelling.`,
        tags: ["discovery"],
        parameters: [...FILTER_PARAMETERS, ref("parameters", "kind")],
        responses: {
          "200": {
            description: "Sorted by application, then environment.",
            content: json({ type: "array", items: ref("schemas", "TargetGroup") }),
          },
          "400": ref("responses", "BadRequest"),
          "401": ref("responses", "Unauthorized"),
        },
        security: READ_SECURITY,
      },
    },
    "/{application}/{environment}/status": {
      get: {
        operationId: "groupStatus",
        summary: "Is it scraped? Each registered target's health on each Prometheus in PROMETHEUS_URL",
        description:
          "Without `wait`: 200 with the status as it is. With `wait`: held until `ready` (200) or the time is up (503, " +
          "same body), so `curl --fail \"$S/billing/prod/status?wait=2m\"` gates a deploy. A client that hangs up ends " +
          "the wait; a service shutting down answers at once. Nothing registered: `ready: false`, no targets, a `message`.",
        tags: ["status"],
        parameters: [...GROUP_PARAMETERS, ref("parameters", "wait")],
        responses: {
          "200": { description: "Without `wait`: the status. With it: ready.", content: json(ref("schemas", "GroupStatus")) },
          "400": ref("responses", "BadRequest"),
          "401": ref("responses", "Unauthorized"),
          "404": ref("responses", "NoPrometheus"),
          "503": { description: "`wait` is over and not every target is up on every Prometheus.", content: json(ref("schemas", "GroupStatus")) },
        },
        security: READ_SECURITY,
      },
    },
    "/{application}/{environment}/probes/status": {
      get: {
        operationId: "probesStatus",
        summary: "Does it answer? Each registered probe's last result (blackbox_exporter's) on each Prometheus in PROMETHEUS_URL",
        description:
          "Read from each Prometheus' targets API (is the probe scraped, and how) and its query API (probe_success, " +
          "probe_duration_seconds, probe_http_status_code of the series with the target's labels). `up`: the probe " +
          "succeeded; `down`: it failed, or blackbox_exporter could not be scraped (`error` says which). With `wait`: " +
          "held until every probe succeeds on every Prometheus (200) or the time is up (503, same body), so " +
          "`curl --fail-with-body \"$S/billing/prod/probes/status?wait=2m\"` gates a deploy on its URL answering.",
        tags: ["probes", "status"],
        parameters: [...GROUP_PARAMETERS, ref("parameters", "wait")],
        responses: {
          "200": { description: "Without `wait`: the status. With it: every probe succeeded.", content: json(ref("schemas", "GroupStatus")) },
          "400": ref("responses", "BadRequest"),
          "401": ref("responses", "Unauthorized"),
          "404": ref("responses", "NoPrometheus"),
          "503": { description: "`wait` is over and not every probe succeeded on every Prometheus.", content: json(ref("schemas", "GroupStatus")) },
        },
        security: READ_SECURITY,
      },
    },
    "/-/status": {
      get: {
        operationId: "allStatus",
        summary: "The status of every registered group (what the page's health dots show); ?kind=probes: every probe group's results",
        tags: ["status"],
        parameters: [...FILTER_PARAMETERS, ref("parameters", "kind")],
        responses: {
          "200": {
            description: "Sorted by application, then environment.",
            content: json({
              type: "object",
              required: ["prometheus", "ready", "groups"],
              properties: {
                prometheus: { type: "array", items: { type: "string", example: "http://prometheus:9090" } },
                ready: { type: "boolean", description: "Every group ready; false when nothing is registered." },
                groups: { type: "array", items: ref("schemas", "GroupStatus") },
              },
            }),
          },
          "400": ref("responses", "BadRequest"),
          "401": ref("responses", "Unauthorized"),
          "404": ref("responses", "NoPrometheus"),
        },
        security: READ_SECURITY,
      },
    },
    "/-/ui/app.js": {
      get: {
        operationId: "uiScript",
        summary: "The script of the page a browser gets at / (never needs a token)",
        tags: ["status"],
        responses: { "200": { description: "JavaScript.", content: { "text/javascript": { schema: { type: "string" } } } } },
      },
    },
    "/-/ui/view.js": {
      get: {
        operationId: "uiView",
        summary: "The description of the page that both the service and the page's script render (never needs a token)",
        tags: ["status"],
        responses: { "200": { description: "JavaScript (a module).", content: { "text/javascript": { schema: { type: "string" } } } } },
      },
    },
    "/-/ui/app.css": {
      get: {
        operationId: "uiStylesheet",
        summary: "The stylesheet of the page a browser gets at / (never needs a token)",
        tags: ["status"],
        responses: { "200": { description: "CSS.", content: { "text/css": { schema: { type: "string" } } } } },
      },
    },
    "/-/ui/icon.svg": {
      get: {
        operationId: "uiIcon",
        summary: "The icon of the page a browser gets at / (never needs a token)",
        tags: ["status"],
        responses: { "200": { description: "SVG.", content: { "image/svg+xml": { schema: { type: "string" } } } } },
      },
    },
    "/metrics": {
      get: {
        operationId: "metrics",
        summary: "Prometheus metrics of this service (never needs a token)",
        tags: ["operations"],
        responses: {
          "200": {
            description: "The Prometheus text exposition format.",
            content: { "text/plain; version=0.0.4; charset=utf-8": { schema: { type: "string" } } },
          },
        },
      },
    },
    "/-/healthy": {
      get: {
        operationId: "healthy",
        summary: "200 while the process is up",
        tags: ["operations"],
        responses: { "200": { description: "Up.", content: json(ref("schemas", "Status"), { status: "healthy" }) } },
      },
    },
    "/-/ready": {
      get: {
        operationId: "ready",
        summary: "200 once the directory is loaded and watched; 503 before that and while shutting down",
        tags: ["operations"],
        responses: {
          "200": { description: "Ready.", content: json(ref("schemas", "Status"), { status: "ready" }) },
          "503": { description: "Not ready, and why.", content: json(ref("schemas", "Status")) },
        },
      },
    },
    "/-/openapi.json": {
      get: {
        operationId: "openapi",
        summary: "This description",
        tags: ["operations"],
        responses: { "200": { description: "OpenAPI 3.0 document.", content: json({ type: "object" }) } },
      },
    },
  },
  components: {
    schemas: {
      Labels: {
        type: "object",
        description: "Label name → non-empty value. `job` and `env` are always present.",
        additionalProperties: { type: "string", minLength: 1 },
      },
      TargetGroup: {
        type: "object",
        required: ["targets", "labels"],
        properties: {
          targets: { type: "array", minItems: 1, items: { type: "string", example: "host1:9100" } },
          labels: ref("schemas", "Labels"),
        },
      },
      GroupFile: {
        type: "array",
        description: "What the file holds: one group, or nothing.",
        items: ref("schemas", "TargetGroup"),
      },
      Change: {
        type: "object",
        description: "Only these two keys; label values must be strings.",
        properties: {
          targets: { type: "array", items: { type: "string", example: "host1:9100" } },
          labels: ref("schemas", "Labels"),
        },
        additionalProperties: false,
      },
      ChangeForm: {
        type: "object",
        description: "`targets` comma-separated or repeated; every other field is a label.",
        properties: { targets: { type: "string", example: "host1:9100,host2:9100" } },
        additionalProperties: { type: "string" },
      },
      Index: {
        type: "object",
        required: ["groups", "probes"],
        properties: {
          groups: { type: "array", description: "The scrape groups.", items: ref("schemas", "IndexLine") },
          probes: { type: "array", description: "The probe groups; `file` is in probes/.", items: ref("schemas", "IndexLine") },
        },
      },
      IndexLine: {
        type: "object",
        required: ["application", "environment", "file", "targets", "labels", "changedAt"],
        properties: {
          application: NAME,
          environment: NAME,
          file: { type: "string", example: "billing@prod.json" },
          targets: { type: "integer", description: "How many targets the group has." },
          labels: ref("schemas", "Labels"),
          changedAt: { type: "string", format: "date-time" },
          expires: {
            type: "object",
            description: "Only for a group with expiring targets (?ttl=): each one's deadline.",
            additionalProperties: { type: "string", format: "date-time" },
          },
        },
      },
      GroupStatus: {
        type: "object",
        required: ["application", "environment", "ready", "targets"],
        properties: {
          application: NAME,
          environment: NAME,
          kind: { type: "string", enum: ["probes"], description: "Only for a probe group." },
          ready: { type: "boolean", description: "Every target up on every Prometheus (a probe: it succeeded); false when nothing is registered." },
          message: { type: "string", description: "Only when nothing is registered." },
          targets: {
            type: "array",
            items: {
              type: "object",
              required: ["target", "ready", "servers"],
              properties: {
                target: { type: "string", example: "host1:9100" },
                ready: { type: "boolean" },
                servers: {
                  type: "array",
                  description: "One per PROMETHEUS_URL item, in its order.",
                  items: {
                    type: "object",
                    required: ["prometheus", "health", "lastScrape"],
                    properties: {
                      prometheus: { type: "string", example: "http://prometheus:9090" },
                      health: {
                        type: "string",
                        enum: ["up", "down", "unknown", "missing", "dropped", "unreachable"],
                        description:
                          "`unknown`: listed, not scraped yet; `missing`: not listed; `dropped`: relabelled away; " +
                          "`unreachable`: that Prometheus did not answer.",
                      },
                      lastScrape: { type: "string", format: "date-time", nullable: true },
                      error: {
                        type: "string",
                        description: "`down`: Prometheus' lastError (a probe: why it failed, or why blackbox_exporter could not be scraped); `unreachable`: why it did not answer.",
                      },
                      scrapeUrl: { type: "string", example: "http://host1:9100/metrics" },
                      debugUrl: { type: "string", description: "A failed probe: the scrape URL with debug=true, blackbox_exporter's account of the probe." },
                      probe: {
                        type: "object",
                        description: "A probe's last result, once blackbox_exporter reported one.",
                        properties: {
                          success: { type: "boolean", description: "probe_success" },
                          durationSeconds: { type: "number", description: "probe_duration_seconds" },
                          httpStatusCode: { type: "integer", description: "probe_http_status_code (http probes; 0: no HTTP answer)" },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
      Status: {
        type: "object",
        required: ["status"],
        properties: { status: { type: "string" }, message: { type: "string" } },
      },
      Error: {
        type: "object",
        required: ["message"],
        properties: { message: { type: "string", description: "What is wrong, and how to fix it." } },
      },
    },
    parameters: {
      wait: {
        name: "wait",
        in: "query",
        description: "Prometheus duration (`30s`, `2m`, `1m30s`), at most 10m.",
        schema: { type: "string", pattern: "^([0-9]+(y|w|d|h|m|s|ms))+$|^0$", example: "2m" },
      },
      kind: {
        name: "kind",
        in: "query",
        description: "`targets` (the default): scrape groups; `probes`: probe groups (blackbox_exporter's).",
        schema: { type: "string", enum: ["targets", "probes"] },
      },
      ttl: {
        name: "ttl",
        in: "query",
        description:
          "The targets the request names expire this long after it is applied unless renewed (Prometheus duration, 1s to 365d). " +
          "A POST with ttl renews registered targets instead of refusing them: a heartbeat.",
        schema: { type: "string", example: "60s" },
      },
      ifMatch: {
        name: "If-Match",
        in: "header",
        description: "Change only if the group's ETag is one of these (or *: something is registered); else 412.",
        schema: { type: "string" },
      },
      ifNoneMatch: {
        name: "If-None-Match",
        in: "header",
        description: "*: change only if nothing is registered (create, never overwrite); else 412.",
        schema: { type: "string" },
      },
      application: { name: "application", in: "path", required: true, description: "e.g. billing", schema: NAME },
      environment: { name: "environment", in: "path", required: true, description: "e.g. prod-hou", schema: NAME },
      applicationFilter: {
        name: "application",
        in: "query",
        description: "Only this application; repeat for several.",
        schema: { type: "array", items: NAME },
        style: "form",
        explode: true,
      },
      pageFilter: {
        name: "q",
        in: "query",
        description: "The page only (a browser): its filter, e.g. `billing health:down team=core`; the JSON index ignores it.",
        schema: { type: "string" },
      },
      environmentFilter: {
        name: "environment",
        in: "query",
        description: "Only this environment; repeat for several.",
        schema: { type: "array", items: NAME },
        style: "form",
        explode: true,
      },
    },
    responses: {
      BadRequest: {
        description: "A bad name, body, rule or query parameter (each route takes only the parameters listed for it); the message says which.",
        content: json(ref("schemas", "Error")),
      },
      Unauthorized: {
        description: "No token, or one not in AUTH_TOKENS_FILE (only when it is set).",
        headers: { "WWW-Authenticate": { description: "Bearer", schema: { type: "string" } } },
        content: json(ref("schemas", "Error")),
      },
      Forbidden: {
        description: "The token may not change this application.",
        content: json(ref("schemas", "Error")),
      },
      PreconditionFailed: {
        description: "If-Match or If-None-Match does not hold for the current group; nothing changed.",
        headers: ETAG_HEADER,
        content: json(ref("schemas", "Error")),
      },
      NotFound: {
        description: "DELETE of an application/environment with nothing registered.",
        content: json(ref("schemas", "Error")),
      },
      NoPrometheus: {
        description: "PROMETHEUS_URL is not set: the message says what to set.",
        content: json(ref("schemas", "Error")),
      },
    },
    securitySchemes: {
      bearer: {
        type: "http",
        scheme: "bearer",
        description: "A token from AUTH_TOKENS_FILE; see docs/operations.md, Write tokens.",
      },
    },
  },
};
