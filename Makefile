# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NPM ?= npm
# `docker compose` (v2 plugin) when there is one, else the standalone docker-compose.
DOCKER_COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)

.PHONY: help install tools build run test typecheck lint unit soak bench clean distclean docker-build docker-run docker-stop

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

node_modules/.package-lock.json: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund

install: node_modules/.package-lock.json ## install dependencies (npm ci)

# The tests run real programs from Debian packages: prometheus/promtool, blackbox_exporter
# (prometheus-blackbox-exporter, for the probes), docker-compose, a
# three-member etcd (etcd-server, etcdctl from etcd-client), headless chromium,
# systemd-analyze and systemd-sysusers (systemd), curl (contrib/systemd's register script) and jq
# (the docs' one-liners, test/docs/), and for the image
# (test/containers/): podman with runc, its network helpers netavark and aardvark-dns (which
# drive iptables), catatonit for `podman kube play`'s pods and mmdebstrap for the base images.
# A path names a helper podman keeps off PATH. As root (CI, a container) the missing ones are
# installed with apt; otherwise make says how.
TOOLS := prometheus:prometheus promtool:prometheus prometheus-blackbox-exporter:prometheus-blackbox-exporter \
         docker-compose:docker-compose etcd:etcd-server \
         etcdctl:etcd-client chromium:chromium systemd-analyze:systemd openssl:openssl curl:curl \
         podman:podman runc:runc catatonit:catatonit mmdebstrap:mmdebstrap iptables:iptables \
         jq:jq /usr/lib/podman/netavark:netavark /usr/lib/podman/aardvark-dns:aardvark-dns
tools: ## make sure the programs the tests run are there (apt-get install as root)
	@missing=$$(for t in $(TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t##*:}; done | sort -u | tr '\n' ' '); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
	  echo "missing Debian packages: $$missing. Install them (sudo apt-get install $$missing)," \
	       "or point PROMETHEUS_BIN, PROMTOOL_BIN, BLACKBOX_EXPORTER_BIN, DOCKER_COMPOSE_BIN, ETCD_BIN, ETCDCTL_BIN, CHROMIUM_BIN, SYSTEMD_ANALYZE_BIN, CURL_BIN, PODMAN_BIN, MMDEBSTRAP_BIN at the binaries;" \
	       "the tests then say which one is missing."; \
	fi

dist/main.js: node_modules/.package-lock.json tsconfig.json tsconfig.build.json $(shell find src -name '*.ts')
	$(NPM) run build

build: dist/main.js ## compile TypeScript to dist/

# Readable log lines through pino-pretty; `npm start` and the image keep pino's JSON. The shell
# execs node, so Ctrl-C or a SIGTERM to the group reaches node itself. pino-pretty runs in a
# session of its own, so the signal does not reach it (a `trap ''` would not do: node resets
# inherited signal dispositions at start), and it ends when node closes its stdout: the lines of
# the drain are still shown.
run: build ## serve on 127.0.0.1:12345 writing to ./file_sd (override with BIND, FILE_SD_DIRECTORY); readable logs
	exec node dist/main.js > >(exec setsid node_modules/.bin/pino-pretty)

typecheck: install ## type-check src, test and bench
	$(NPM) run typecheck

lint: install ## eslint
	$(NPM) run lint

unit: build tools ## vitest only
	$(NPM) test

test: typecheck lint unit ## everything CI runs: type-check, lint, every test

CRASH_ROUNDS ?= 200
soak: build ## SIGKILL the server under write load CRASH_ROUNDS times (default 200; make test runs 12)
	CRASH_ROUNDS=$(CRASH_ROUNDS) $(NPM) exec -- vitest run test/reliability/crash.test.ts

bench: build ## the service beside bare node:http and a raw fsync loop; prints markdown for BENCHMARKS.md (~2 min)
	node_modules/.bin/tsc -p tsconfig.bench.json
	node dist-bench/bench/main.js

clean: ## remove build output
	rm -rf dist dist-bench coverage

distclean: clean ## also remove node_modules
	rm -rf node_modules

docker-build: ## build the sidecar image (tag and CONTAINER_UID/GID from .env, see .env-sample)
	$(DOCKER_COMPOSE) build file-sd

docker-run: docker-build ## run the service and Prometheus with docker-compose.yml (ports from .env)
	$(DOCKER_COMPOSE) up -d
	$(DOCKER_COMPOSE) ps

docker-stop: ## stop the containers (volumes, and so the registered targets, are kept)
	$(DOCKER_COMPOSE) down
