# syntax=docker/dockerfile:1
# One image, one binary: `pgfleet gateway | worker | controller | migrate | ...`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pgfleet && cp target/release/pgfleet /pgfleet

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgfleet
COPY --from=build /pgfleet /usr/local/bin/pgfleet
USER 10001:10001
EXPOSE 8080 9464 9465
ENTRYPOINT ["/usr/local/bin/pgfleet"]
CMD ["--help"]
