# syntax=docker/dockerfile:1
# rampart: a small image holding only the binary, its config and a non-root user.
#
#   docker build -t rampart .
#   docker run --rm -p 443:8443 -p 80:8080 \
#     -v "$PWD/certs:/etc/rampart/certs:ro" \
#     -v "$PWD/rampart.toml:/etc/rampart/rampart.toml:ro" rampart
#
# The key file must be readable by uid 65532 (e.g. `chown 65532 certs/tls.key`, mode 0600).
#
# Build stage: the same Debian release as the runtime image, so the binary runs with the glibc
# it was linked against, and the Rust release that recorded the shipped profile (tools/pgo,
# tools/rustc-wrapper.sh), so that the release build is profile-guided: another Rust builds the
# plain release binary. tests/it/build_profile.rs keeps the two the same.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rampart \
 && cp target/release/rampart /rampart \
 && strip /rampart \
 && mkdir /empty

# Runtime: distroless "cc" has glibc and libgcc and nothing else (no shell, no package manager);
# the :nonroot tag runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /rampart /usr/local/bin/rampart
COPY config/docker.toml /etc/rampart/rampart.toml
# Mount the real certificate here (tls.crt, tls.key). Without one, rampart writes a self-signed
# development certificate into it, with a loud warning: the folder belongs to the runtime user.
COPY --from=build --chown=65532:65532 /empty /etc/rampart/certs
# ACME storage ([acme] storage = "/var/lib/rampart/acme"): a named volume mounted here starts
# with this directory's owner, so the runtime user can write the account and certificates.
COPY --from=build --chown=65532:65532 /empty /var/lib/rampart/acme
ENV RAMPART_CONFIG=/etc/rampart/rampart.toml
# Debian 12's glibc (2.36) copies blocks of a few KiB and more with `rep movsb`, which AMD Zen 3
# and later run many times slower when the destination is unaligned (rustls's TLS records: the
# plaintext is copied in after a 5-byte header). Serving a 1 MiB file over TLS on an AMD EPYC
# host spent a third of rampart's CPU in that copy; with vector copies instead, 1.24 to 1.51x
# the requests/s, and no change on small responses (docs/operations.md, "Large responses on
# AMD hosts"). rampart would execute itself again with it on such a CPU (src/copy_tuning.rs);
# set here, the binary starts once, on every CPU.
ENV GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4194304
# Numeric, so Kubernetes' runAsNonRoot can verify it (a user name cannot be checked).
USER 65532:65532
# 8443 https, 8080 http (redirects to https), 9090 admin (/metrics, /healthz, /readyz).
EXPOSE 8443 8080 9090
# No curl in the image: the binary asks its own admin listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/rampart", "healthcheck"]
# docker stop sends SIGTERM: in-flight requests finish within listen.shutdown_grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rampart"]
CMD ["run"]
