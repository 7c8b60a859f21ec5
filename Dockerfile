# Tern in a container: a multi-stage build (the Rust toolchain stays in the first stage) and a
# small Debian runtime running as an unprivileged user.
#
#   docker build --build-arg TERN_COMMIT=$(git rev-parse --short=12 HEAD) -t tern .
#   docker run -d --name tern --hostname mail.example.org -p 25:25 -p 465:465 -p 587:587 -p 993:993 -p 143:143 \
#       -p 995:995 -p 110:110 -p 4190:4190 -p 443:443 -v tern-data:/var/lib/tern -v tern-config:/etc/tern tern
#   docker exec -it tern tern setup example.org
#
# deploy/docker/docker-compose.yml does the same with compose.

FROM rust:1.95-bookworm AS build
WORKDIR /src
ARG TERN_COMMIT=unknown
ENV TERN_COMMIT=${TERN_COMMIT}
# gcc builds aws-lc (the TLS crypto); the Rust image has it.
COPY . .
RUN cargo build --release --locked -p tern \
 && install -D -m 0755 target/release/tern /out/tern \
 && strip /out/tern

FROM debian:bookworm-slim
# CA roots for outbound TLS (delivery, ACME, MTA-STS); tini reaps and forwards signals so
# SIGTERM (graceful stop) and SIGHUP (certificate reload) reach Tern.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tern \
 && useradd --system --uid 10001 --gid tern --home-dir /var/lib/tern --shell /usr/sbin/nologin tern \
 && install -d -o tern -g tern -m 0700 /var/lib/tern \
 && install -d -o tern -g tern -m 0750 /etc/tern
COPY --from=build /out/tern /usr/local/bin/tern
COPY deploy/docker/tern.toml /etc/tern/tern.toml
RUN chown tern:tern /etc/tern/tern.toml
USER tern
# Docker lets unprivileged processes bind ports below 1024 inside the container
# (net.ipv4.ip_unprivileged_port_start=0 since Docker 20.10), so no capability is needed.
EXPOSE 25 465 587 143 993 110 995 4190 443 80
VOLUME ["/var/lib/tern", "/etc/tern"]
ENV TERN_CONFIG=/etc/tern/tern.toml
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/tern"]
CMD ["serve"]
