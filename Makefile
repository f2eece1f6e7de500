# Nexus. `make run` runs the pipeline; `make test` installs what the tests need and runs them all.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NEXUS      := node bin/nexus.js
DATA_DIR   ?= .data
ETCD_PORT  ?= 2379
ETCD_PEER  ?= 2380
PG_PORT    ?= 5433
SAMPLE     := samples/dcgm_metrics_20250718_134233.csv
# The password of the local PostgreSQL (random, made by setup-postgres), given to the run targets
# unless DB_PASSWORD, DB_PASSWORD_FILE or DATABASE_URL(_FILE) say otherwise.
PG_PASSWORD := $(DATA_DIR)/postgres/password
DB_ENV      = $(if $(DB_PASSWORD)$(DB_PASSWORD_FILE)$(DATABASE_URL)$(DATABASE_URL_FILE),,$(if $(wildcard $(PG_PASSWORD)),DB_PASSWORD_FILE=$(PG_PASSWORD)))

NODE_INPUTS      := $(shell find src) tsconfig.json tsconfig.build.json package-lock.json scripts/copy-assets.mjs
DASHBOARD_INPUTS := $(shell find dashboard) scripts/build-dashboard.mjs package-lock.json
BUILT            := dist/.tsc.stamp dist/dashboard/index.html dist/store/pglite/template.tar.gz.version

.PHONY: help setup-dev setup-run setup-etcd setup-etcd-secure stop-etcd setup-postgres stop-postgres migrate build-nexus build-nexus-streamer build-nexus-collector \
        build-nexus-gateway run run-nexus-pipeline run-nexus-streamer run-nexus-collector \
        run-nexus-gateway image deploy-check test test-unit test-integration test-e2e build-dashboard screenshots lint typecheck format bench clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'

setup-dev: ## Install Debian packages (etcd, PostgreSQL 15, Chromium, Prometheus) and npm packages
	@scripts/setup.sh --all

setup-run: ## Install the npm packages (all `make run` needs)
	@scripts/setup.sh

setup-etcd: setup-dev ## Start a local etcd on 127.0.0.1:2379, data in .data/etcd
	@scripts/local-etcd.sh start $(DATA_DIR) $(ETCD_PORT) $(ETCD_PEER)

setup-etcd-secure: setup-dev ## Start a local etcd with TLS and one least-privilege user per component (settings in .data/etcd-secure/*.env)
	@scripts/local-etcd-secure.sh start $(DATA_DIR) $(ETCD_PORT) $(ETCD_PEER)

stop-etcd: ## Stop the local etcd started by setup-etcd or setup-etcd-secure
	@scripts/local-etcd.sh stop $(DATA_DIR) $(ETCD_PORT) $(ETCD_PEER)

setup-postgres: setup-dev ## Start a local PostgreSQL on 127.0.0.1:5433 (db/user telemetry, password in .data/postgres/password), data in .data/postgres
	@scripts/local-postgres.sh start $(DATA_DIR) $(PG_PORT)

stop-postgres: ## Stop the local PostgreSQL started by setup-postgres
	@scripts/local-postgres.sh stop $(DATA_DIR) $(PG_PORT)

build-nexus: $(BUILT) ## Build the nexus command (all components, and the dashboard) into dist/ (only what changed)
	@echo "dist/ is built (run: node bin/nexus.js --help)"

# The steps of `npm run build`, each redone only when its inputs changed (the directories are
# inputs too: a file added, removed or renamed changes its directory). The stamps live in dist/.
dist/.tsc.stamp: $(NODE_INPUTS) | setup-run
	@[ -f dist/cli/main.js ] || rm -f dist/.tsbuildinfo
	@echo "build: compiling src/ into dist/"
	@node_modules/.bin/tsc -p tsconfig.build.json --incremental --tsBuildInfoFile dist/.tsbuildinfo
	@node scripts/copy-assets.mjs
	@touch $@

dist/dashboard/index.html: $(DASHBOARD_INPUTS) | setup-run
	@node scripts/build-dashboard.mjs

dist/store/pglite/template.tar.gz.version: package-lock.json scripts/build-pglite-template.mjs | setup-run
	@node scripts/build-pglite-template.mjs
	@touch $@

build-nexus-streamer: build-nexus ## Build the streamer (part of the nexus command)

build-nexus-collector: build-nexus ## Build the collector (part of the nexus command)

build-nexus-gateway: build-nexus ## Build the gateway (part of the nexus command)

run: build-nexus ## The whole pipeline in one process (nexus up): a live fleet at http://localhost:8080/
	@$(NEXUS) up

run-nexus-streamer: build-nexus ## Run the streamer (CSV_FILE, BATCH_SIZE, STREAM_INTERVAL, LOOP_MODE, ...)
	NODE_OPTIONS="--max-semi-space-size=8 $$NODE_OPTIONS" $(NEXUS) streamer

run-nexus-collector: build-nexus ## Run the collector (DB_*/DATABASE_URL, WORKERS, ENABLE_NEXUS, ...)
	$(DB_ENV) $(NEXUS) collector

migrate: build-nexus ## Apply the database migrations (DB_*/DATABASE_URL)
	$(DB_ENV) $(NEXUS) migrate

run-nexus-gateway: build-nexus ## Run the gateway (PORT, ENABLE_GRAPHQL, ENABLE_WEBSOCKET, CORS_ORIGINS, TLS_CERT_FILE, DB_*, ETCD_*)
	$(DB_ENV) $(NEXUS) gateway

run-nexus-pipeline: build-nexus setup-dev ## Run etcd (ETCD_PORT), PostgreSQL (PG_PORT), collector, gateway and streamer locally; Ctrl-C stops all
	@DATA_DIR=$(DATA_DIR) ETCD_PORT=$(ETCD_PORT) ETCD_PEER=$(ETCD_PEER) PG_PORT=$(PG_PORT) exec node --import tsx scripts/pipeline.ts

IMAGE         ?= nexus:$(shell node -p "require('./package.json').version")
# The container engine: docker, else podman (CONTAINER_ENGINE=... picks one).
CONTAINER_ENGINE ?= $(shell command -v docker >/dev/null 2>&1 && echo docker || (command -v podman >/dev/null 2>&1 && echo podman))

image: ## Build the container image (IMAGE, default nexus:<version>) with docker or podman: one image, every component
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
	  echo "make image: neither docker nor podman is installed (or set CONTAINER_ENGINE)" >&2; exit 2; fi
	@$(CONTAINER_ENGINE) info >/dev/null 2>&1 || { \
	  echo "make image: $(CONTAINER_ENGINE) is installed but does not answer ($(CONTAINER_ENGINE) info failed: is its daemon running?)" >&2; exit 2; }
	$(CONTAINER_ENGINE) build -t $(IMAGE) \
	  --build-arg VERSION=$(lastword $(subst :, ,$(IMAGE))) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) .

deploy-check: setup-dev ## Render the Kubernetes overlays and the Helm chart offline and check every object (schemas, probes, non-root, policies)
	npx tsx scripts/test.ts unit --no-coverage test/unit/deployments-render.test.ts test/unit/deployments-k8s.test.ts test/unit/deployments-seed.test.ts test/unit/chart-schema.test.ts

lint: setup-run ## ESLint, Prettier and dependency-cruiser
	npx eslint .
	npx prettier --check .
	npx depcruise src --config .dependency-cruiser.cjs

typecheck: setup-run ## TypeScript, strict (the Node.js code, then the dashboard with lib DOM)
	npx tsc -p tsconfig.json --noEmit
	npx tsc -p dashboard/tsconfig.json --noEmit

test: setup-dev lint typecheck ## Everything: lint, type check, unit, integration and browser tests (starts its own etcd)
	npx tsx scripts/test.ts all

test-unit: setup-run ## Unit tests only
	npx tsx scripts/test.ts unit

test-integration: setup-dev ## Integration tests against real etcd (started on free ports)
	npx tsx scripts/test.ts integration

test-e2e: setup-dev ## Browser tests of the dashboard (Chromium against nexus up; screenshots in test-results/)
	npx tsx scripts/test.ts e2e

build-dashboard: setup-run ## Build the web dashboard into dist/dashboard/
	@npm run -s build:dashboard

screenshots: setup-dev ## Refresh docs/img/*.png: overview, GPU and host pages, idle GPUs, events, usage (Chromium against nexus up)
	npx tsx scripts/screenshots.ts

format: ## Rewrite files with Prettier
	npx prettier --write .

bench: setup-dev ## Benchmarks (printed, and written to docs/benchmarks.md)
	npx tsx bench/run.ts

clean: ## Remove build output, coverage and local data
	rm -rf dist coverage test-results $(DATA_DIR)
