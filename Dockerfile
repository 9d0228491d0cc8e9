# FerroLB's image: both binaries; the manifests and the chart name each container's command.
# Multi-arch with buildx (amd64 for servers, arm64 for Raspberry Pis), natively or under QEMU:
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/ferrolb/ferrolb:0.1.0 --push .
# Without a container engine or a registry, `scripts/image.sh OUTDIR` builds the same image
# (both architectures, OCI archives) with Debian's tools; it reads its layout (the COPY
# destination, ENTRYPOINT, CMD, USER) from the last stage below, so the two cannot drift.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ferrolb-speaker -p ferrolb-controller \
 && cp target/release/ferrolb-speaker target/release/ferrolb-controller / \
 && strip --strip-debug /ferrolb-speaker /ferrolb-controller

# glibc and libgcc_s, nothing else. Root by default: the speaker needs it for raw sockets
# (every capability but NET_RAW dropped, manifests/speaker.yaml); the controller's Pod runs
# it as 65534.
FROM gcr.io/distroless/cc-debian12 AS all
COPY --from=build /ferrolb-speaker /ferrolb-controller /
ENTRYPOINT ["/ferrolb-speaker"]
CMD ["run"]
