# FerroLB's image: both binaries (the default, last target, which manifests/ and the chart
# deploy), plus `controller` and `speaker` targets of one binary each. Multi-arch with
# buildx (amd64 for servers, arm64 for Raspberry Pis), natively or under QEMU:
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/ferrolb/ferrolb:0.1.0 --push .
# Not built in this repository's CI: its machines have no container engine.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferrolb-speaker -p ferrolb-controller \
 && cp target/release/ferrolb-speaker target/release/ferrolb-controller /

# The controller runs as nobody.
FROM gcr.io/distroless/cc-debian12:nonroot AS controller
COPY --from=build /ferrolb-controller /ferrolb-controller
ENTRYPOINT ["/ferrolb-controller", "run"]

# The speaker runs as root in its container with every capability but NET_RAW dropped
# (see manifests/speaker.yaml).
FROM gcr.io/distroless/cc-debian12 AS speaker
COPY --from=build /ferrolb-speaker /ferrolb-speaker
ENTRYPOINT ["/ferrolb-speaker", "run"]

# Both binaries: what manifests/ deploys (each container names its command).
FROM gcr.io/distroless/cc-debian12 AS all
COPY --from=build /ferrolb-speaker /ferrolb-controller /
