# syntax=docker/dockerfile:1
# The Nexus image: one image for every component (nexus up, streamer, collector, gateway, migrate,
# etcd-roles, token, ...); the command picks the component. Built by `make image`:
#
#   docker run --rm nexus:0.1.0 --help
#   docker run --rm -e DATABASE_URL_FILE=/run/secrets/db-url nexus:0.1.0 collector
#
# Layout (docs/operations.md, "Container image"): /app holds package.json, bin/, dist/ (the
# compiled CLI, the SQL migrations, the dashboard, the PGlite template), samples/ and the
# production node_modules; local state (NEXUS_DATA_DIR) goes to /data, owned by the nexus user.

ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# Build: every dependency (TypeScript, esbuild for the dashboard), then `npm run build` into dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin/ bin/
COPY scripts/ scripts/
COPY dashboard/ dashboard/
COPY src/ src/
RUN npm run build

# Runtime: the production dependencies only, the build's dist/, a non-root user.
FROM ${NODE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="nexus" \
      org.opencontainers.image.description="GPU telemetry pipeline: DCGM CSV -> etcd queue -> PostgreSQL -> REST/GraphQL/WebSocket gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/${NODE_IMAGE}"
# HOST: nexus up listens on every address, as the other components do (outside a container its
# default is loopback), so its API asks for a token (nexus token create --embedded).
ENV NODE_ENV=production \
    NEXUS_DATA_DIR=/data \
    HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: the only production one (protobufjs) checks the versions of its CLI's tools.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/bin/ bin/
COPY --from=build /src/dist/ dist/
COPY samples/ samples/
RUN groupadd --system --gid 10001 nexus \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin nexus \
 && mkdir -p /data \
 && chown 10001:10001 /data
USER 10001:10001
VOLUME ["/data"]
# The gateway (and nexus up); METRICS_PORT of the streamer and collector is whatever is set.
EXPOSE 8080
# No HEALTHCHECK: the image runs components with different ports (the streamer and collector
# serve /healthz only on METRICS_PORT); orchestrators probe /healthz and /readyz per component.
ENTRYPOINT ["node", "bin/nexus.js"]
CMD ["up"]
