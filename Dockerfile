# The ordersaga binary in a small runtime image.
#   docker build -t ordersaga .
#   docker run --rm ordersaga --help
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
# librdkafka is built from the sources bundled with the rdkafka crate.
RUN cargo build --release --locked --bin ordersaga

FROM debian:bookworm-slim
# curl: for the compose healthchecks, which ask each service's /ready.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ordersaga /usr/local/bin/ordersaga
VOLUME /data
ENTRYPOINT ["ordersaga"]
CMD ["--help"]
