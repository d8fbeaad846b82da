# syntax=docker/dockerfile:1
# The file_sd writer as a sidecar: `make docker-build`, or `docker build -t file-sd-writer .`
# Give the container your own uid/gid (--build-arg CONTAINER_UID=$(id -u) --build-arg CONTAINER_GID=$(id -g))
# when FILE_SD_DIRECTORY is a host directory it must write to.
# NODE_IMAGE: any image with node (>= 20.19) and npm on PATH, and groupadd/useradd (Debian's passwd).
# With podman, build with `--format docker`: its default OCI format has no HEALTHCHECK and drops it.
# docs/containers.md says more (what is in the image, the build arguments, signals).
ARG NODE_IMAGE=node:24-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS production-dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ARG CONTAINER_UID=10001
ARG CONTAINER_GID=10001
# --non-unique: the base image already has uid/gid 1000 (node), a common choice for CONTAINER_UID.
RUN groupadd --non-unique --gid "${CONTAINER_GID}" file-sd \
 && useradd --non-unique --uid "${CONTAINER_UID}" --gid "${CONTAINER_GID}" --no-create-home --shell /usr/sbin/nologin file-sd \
 && mkdir -p /file_sd/probes \
 && chown "${CONTAINER_UID}:${CONTAINER_GID}" /file_sd /file_sd/probes
WORKDIR /app
# Owned by root and only readable by the service: it cannot change its own code.
COPY package.json ./
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The page's script and stylesheet, read from ../../ui relative to dist/handlers/.
COPY ui ./ui

ENV NODE_ENV=production \
    FILE_SD_DIRECTORY=/file_sd \
    BIND=0.0.0.0:12345 \
    LOGLEVEL=info
# A new named volume starts as a copy of /file_sd, so it belongs to the service's user, and it
# has probes/ from the start: Prometheus watches that folder only if it is there when it looks.
VOLUME ["/file_sd"]
EXPOSE 12345
USER ${CONTAINER_UID}:${CONTAINER_GID}

# Slim images have no curl: ask /-/healthy with node itself, on the port BIND gives (HTTPS when CERTFILE is set).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const port = (/:([0-9]+)$/.exec(process.env.BIND || '') || [])[1] || '12345'; require(process.env.CERTFILE ? 'node:https' : 'node:http').get({ host: '127.0.0.1', port, path: '/-/healthy', rejectUnauthorized: false, timeout: 4000 }, (answer) => process.exit(answer.statusCode === 200 ? 0 : 1)).on('timeout', () => process.exit(1)).on('error', () => process.exit(1));"]

# node is PID 1 and handles SIGTERM itself (src/main.ts): stop accepting, finish writes, exit 0.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
