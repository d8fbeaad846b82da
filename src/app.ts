import Router from "@koa/router";
import Koa from "koa";
import { HttpMethodEnum, koaBody } from "koa-body";
import type { Logger } from "pino";
import type { FileStore } from "./filestore/store.js";
import { errorAnswers, unreadableBody } from "./handlers/errors.js";
import { deleteGroup, getGroup, methodNotAllowed, notFound, postGroup, putGroup } from "./handlers/groups.js";
import { requestLog } from "./handlers/request-log.js";
import { SUPPORTED_MEDIA_TYPES } from "./parse/body.js";

export interface AppDependencies {
  readonly store: FileStore;
  readonly logger: Logger;
  readonly maxBodyBytes: number;
}

/** Wiring only: store → router → Koa app. */
export function createApp({ store, logger, maxBodyBytes }: AppDependencies): Koa {
  // Every supported body arrives as text; src/parse decides what it means.
  const body = koaBody({
    json: false,
    urlencoded: false,
    text: true,
    textTypes: [...SUPPORTED_MEDIA_TYPES],
    textLimit: maxBodyBytes,
    parsedMethods: [HttpMethodEnum.PUT, HttpMethodEnum.POST, HttpMethodEnum.DELETE],
    onError: unreadableBody,
  });

  const router = new Router();
  router
    .get("/:application/:environment", getGroup(store))
    .put("/:application/:environment", body, putGroup(store))
    .post("/:application/:environment", body, postGroup(store))
    .delete("/:application/:environment", body, deleteGroup(store))
    .all("/:application/:environment", methodNotAllowed);

  const app = new Koa();
  app.use(requestLog(logger));
  app.use(errorAnswers(logger, maxBodyBytes));
  app.use(router.routes());
  app.use(notFound);
  return app;
}
