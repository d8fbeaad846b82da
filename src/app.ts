import Router from "@koa/router";
import Koa, { type Middleware } from "koa";
import { HttpMethodEnum, koaBody } from "koa-body";
import type { Logger } from "pino";
import { OPEN, type Guards } from "./auth/authorize.js";
import { EVERY_GROUP, type GroupSelector } from "./etcdstore/selector.js";
import type { Store } from "./store.js";
import { onlyGet } from "./handlers/allowed-methods.js";
import { logAppError, unreadableBody } from "./handlers/errors.js";
import { requestFrame } from "./handlers/frame.js";
import { deleteGroup, getGroup, GROUP_ROUTES, methodNotAllowed, postGroup, putGroup, supportedEncoding } from "./handlers/groups.js";
import { KINDS } from "./model.js";
import { acceptsOnly, notFound, reservedNotFound } from "./handlers/unknown.js";
import { healthy, ready, type Readiness } from "./handlers/health.js";
import { httpSd } from "./handlers/http-sd.js";
import { index } from "./handlers/index.js";
import { metrics as metricsText } from "./handlers/metrics.js";
import { openapi } from "./handlers/openapi.js";
import { htmlOrJson, page, uiAsset } from "./handlers/page.js";
import { allStatus, groupStatus } from "./handlers/status.js";
import { createMetrics, type ServiceMetrics } from "./metrics.js";
import { SUPPORTED_MEDIA_TYPES } from "./parse/body.js";
import type { StatusService } from "./status/status.js";

export interface AppDependencies {
  readonly store: Store;
  readonly logger: Logger;
  readonly maxBodyBytes: number;
  /** Default: a fresh registry that counts requests but does not see the store's writes. */
  readonly metrics?: ServiceMetrics;
  /** Default: always ready. */
  readonly readiness?: Readiness;
  /** Default: no tokens needed (AUTH_TOKENS_FILE not set). */
  readonly guards?: Guards;
  /** From PROMETHEUS_URL. Default: none; the status endpoints say what to set. */
  readonly status?: StatusService | undefined;
  /** The groups this instance serves to Prometheus (GROUP_SELECTOR): its files and /-/http_sd. Default: every group. */
  readonly share?: GroupSelector;
}

const ALWAYS_READY: Readiness = { notReadyBecause: () => undefined };

export type Wiring = Required<Omit<AppDependencies, "status">> & { readonly status: StatusService | undefined };

/** Fills in the defaults, once, so the router and the middlewares share one metrics registry. */
export function complete(dependencies: AppDependencies): Wiring {
  const metrics = dependencies.metrics ?? createMetrics();
  if (dependencies.metrics === undefined) metrics.measureRegistered(dependencies.store);
  return {
    ...dependencies,
    metrics,
    readiness: dependencies.readiness ?? ALWAYS_READY,
    guards: dependencies.guards ?? OPEN,
    status: dependencies.status,
    share: dependencies.share ?? EVERY_GROUP,
  };
}

/**
 * Every route the service answers, in one router (what the OpenAPI test reads). The service's
 * own endpoints come first and answer 405 to other methods: `/-/…` also matches
 * `/:application/:environment`.
 */
export function createRouter(wiring: Wiring): Router {
  const router = new Router();
  serviceRoutes(router, wiring);
  groupRoutes(router, wiring, bodyReader(wiring.maxBodyBytes));
  return router;
}

/**
 * The same routes as createRouter, in two routers picked by the path's first segment: a path that
 * is not `/`, `/metrics…` or `/-…` cannot match a service endpoint, so the hot route,
 * `/<application>/<environment>`, is looked for among the group routes alone (@koa/router tries
 * every route of a router on every request). The others go through the service's routes first,
 * then the group routes, in the one router's order.
 */
export function createDispatch(wiring: Wiring): Middleware {
  const service = new Router();
  const groups = new Router();
  serviceRoutes(service, wiring);
  groupRoutes(groups, wiring, bodyReader(wiring.maxBodyBytes));
  // Typed as plain Koa middleware: the routers add params and router to the context themselves.
  const serviceOnly = service.routes() as unknown as Middleware;
  const groupsOnly = groups.routes() as unknown as Middleware;
  return (ctx, next) => (mayBeServicePath(ctx.path) ? serviceOnly(ctx, () => groupsOnly(ctx, next)) : groupsOnly(ctx, next));
}

/** `/`, `/-…` and `/metrics…` in any case (the router's matching is case-insensitive). */
function mayBeServicePath(path: string): boolean {
  return path === "/" || path.charCodeAt(1) === 0x2d || /^\/metrics/i.test(path);
}

function bodyReader(maxBodyBytes: number): Middleware {
  // Every supported body arrives as text; src/parse decides what it means.
  return koaBody({
    json: false,
    urlencoded: false,
    text: true,
    textTypes: [...SUPPORTED_MEDIA_TYPES],
    textLimit: maxBodyBytes,
    parsedMethods: [HttpMethodEnum.PUT, HttpMethodEnum.POST, HttpMethodEnum.DELETE],
    onError: unreadableBody,
  });
}

const none = (route: string) => acceptsOnly(route, []);
const kindFilters = (route: string) => acceptsOnly(route, ["application", "environment", "kind"]);

/** `/`, `/metrics` and everything under `/-/`. */
function serviceRoutes(router: Router, { store, metrics, readiness, guards, status, share }: Wiring): void {
  router
    .get("/", acceptsOnly("/", ["application", "environment", "q"]), guards.read, htmlOrJson(page(store, status), index(store)))
    .all("/", onlyGet)
    .get("/metrics", none("/metrics"), metricsText(metrics.registry))
    .all("/metrics", onlyGet)
    .get("/-/healthy", none("/-/healthy"), healthy)
    .all("/-/healthy", onlyGet)
    .get("/-/ready", none("/-/ready"), ready(readiness))
    .all("/-/ready", onlyGet)
    .get("/-/http_sd", acceptsOnly("/-/http_sd", ["application", "environment", "kind", "share"]), guards.read, httpSd(store, share))
    .all("/-/http_sd", onlyGet)
    .get("/-/openapi.json", none("/-/openapi.json"), openapi)
    .all("/-/openapi.json", onlyGet)
    .get("/-/status", kindFilters("/-/status"), guards.read, allStatus(store, status))
    .all("/-/status", onlyGet);
  // The page's scripts, stylesheet and icon: no registered data, so never a token.
  router
    .get("/-/ui/app.js", none("/-/ui/app.js"), uiAsset("app.js"))
    .all("/-/ui/app.js", onlyGet)
    .get("/-/ui/view.js", none("/-/ui/view.js"), uiAsset("view.js"))
    .all("/-/ui/view.js", onlyGet)
    .get("/-/ui/app.css", none("/-/ui/app.css"), uiAsset("app.css"))
    .all("/-/ui/app.css", onlyGet)
    .get("/-/ui/icon.svg", none("/-/ui/icon.svg"), uiAsset("icon.svg"))
    .all("/-/ui/icon.svg", onlyGet);
  // Every other /-/ path: after the endpoints above, before /<application>/<environment> would take "-" for a name.
  router.all("/-/{*rest}", reservedNotFound);
}

/** `/<application>/<environment>`, its probes and the status of each. */
function groupRoutes(router: Router, { store, guards, status }: Wiring, body: Middleware): void {
  const ttlElsewhere = new Map([["ttl", "?ttl= is for PUT and POST; DELETE removes targets at once"]]);
  // Is it scraped? Does it answer? The same handler for both kinds.
  for (const kind of KINDS) {
    const path = kind === "probes" ? "/:application/:environment/probes/status" : "/:application/:environment/status";
    router.get(path, acceptsOnly(`${GROUP_ROUTES[kind]}/status`, ["wait"]), guards.read, groupStatus(status, kind)).all(path, onlyGet);
  }
  // A group and its probe group: the same rules and handlers, the kind picks the grammar and the
  // folder. A token that may change an application may change its probes (guards.write reads the application).
  for (const kind of KINDS) {
    const path = kind === "probes" ? "/:application/:environment/probes" : "/:application/:environment";
    const route = GROUP_ROUTES[kind];
    router
      .get(path, none(route), guards.read, getGroup(store, kind))
      .put(path, acceptsOnly(route, ["ttl"]), guards.write, supportedEncoding, body, putGroup(store, kind))
      .post(path, acceptsOnly(route, ["ttl"]), guards.write, supportedEncoding, body, postGroup(store, kind))
      .delete(path, acceptsOnly(route, [], ttlElsewhere), guards.write, supportedEncoding, body, deleteGroup(store, kind))
      .all(path, methodNotAllowed(kind));
  }
}

/** Wiring only: store → router → Koa app. */
export function createApp(dependencies: AppDependencies): Koa {
  const wiring = complete(dependencies);
  const { logger, maxBodyBytes, metrics } = wiring;
  const app = new Koa();
  app.on("error", logAppError(logger));
  app.use(requestFrame({ logger, maxBodyBytes, counted: metrics.counted, internalError: metrics.internalError }));
  app.use(createDispatch(wiring));
  app.use(notFound);
  return app;
}
