#!/usr/bin/env bash
# Builds FerroLB's image as OCI archives, with Debian's tools only (nothing is pulled):
#   scripts/image.sh OUTDIR [amd64] [arm64]     (default: both)
# writes OUTDIR/ferrolb-ARCH.oci.tar, named ghcr.io/ferrolb/ferrolb:VERSION as the manifests
# expect. Load it with `ctr -n k8s.io images import` (k3s: `k3s ctr images import`),
# `kind load image-archive`, or `skopeo copy oci-archive:... docker://REGISTRY/...`.
#
# The layout (where the binaries go, ENTRYPOINT, CMD, USER) is read from the Dockerfile's
# last stage; the root holds the two release binaries, the dynamic loader and the shared
# libraries they name (from the build machine's glibc for amd64, Debian's arm64 glibc for
# arm64), nothing else. arm64 is cross-built with Debian's rustc-web and
# libstd-rust-web-dev:arm64 and gcc-aarch64-linux-gnu.
# Needs: buildah, binutils (readelf); for arm64 also /usr/bin/cargo (cargo-web), /usr/bin/rustc
# (rustc-web), libstd-rust-web-dev:arm64, libc6:arm64, libgcc-s1:arm64, gcc-aarch64-linux-gnu.
set -euo pipefail
# The root's folders must be readable by the controller's non-root user.
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [amd64] [arm64]" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
shift
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
[ -n "$version" ] || { echo "no version in $root/Cargo.toml" >&2; exit 1; }
name=ghcr.io/ferrolb/ferrolb:$version

# The last stage of the Dockerfile: COPY --from=build SRC... DEST, ENTRYPOINT, CMD, USER.
last_stage=$(awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$root/Dockerfile")
copy_line=$(grep '^COPY --from=build ' <<<"$last_stage") ||
  { echo "the Dockerfile's last stage has no 'COPY --from=build SRC... DEST'" >&2; exit 1; }
read -r -a copy_words <<<"${copy_line#COPY --from=build }"
dest=${copy_words[-1]}
# Docker takes the last of each.
entrypoint=$(sed -n 's/^ENTRYPOINT //p' <<<"$last_stage" | tail -1)
cmd=$(sed -n 's/^CMD //p' <<<"$last_stage" | tail -1)
user=$(sed -n 's/^USER //p' <<<"$last_stage" | tail -1)
binaries=()
for src in "${copy_words[@]:0:${#copy_words[@]}-1}"; do binaries+=("$(basename "$src")"); done

# A private store: nothing of the machine's containers is touched.
store=$(mktemp -d)
trap 'buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs rm --all >/dev/null 2>&1 || true; rm -rf "$store"' EXIT
bah() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

build_binaries() { # ARCH -> prints the directory holding the release binaries
  local packages=(-p ferrolb-speaker -p ferrolb-controller)
  case $1 in
    amd64)
      (cd "$root" && cargo build --release --locked "${packages[@]}" >&2)
      echo "$root/target/release" ;;
    arm64)
      # Debian's rustc-web has the arm64 standard library; rustup's toolchain here does not.
      (cd "$root" && RUSTC=/usr/bin/rustc \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
        /usr/bin/cargo build --release --locked --target aarch64-unknown-linux-gnu \
        --target-dir "$root/target/debian-rustc" "${packages[@]}" >&2)
      echo "$root/target/debian-rustc/aarch64-unknown-linux-gnu/release" ;;
    *) echo "unknown architecture $1 (amd64, arm64)" >&2; exit 2 ;;
  esac
}

libdirs() { # ARCH -> where that architecture's glibc lives on this machine
  case $1 in
    amd64) echo /lib/x86_64-linux-gnu /lib64 ;;
    # libc6:arm64 (multiarch), not the cross-compiler's older copy in /usr/aarch64-linux-gnu.
    arm64) echo /lib/aarch64-linux-gnu ;;
  esac
}

find_lib() { # ARCH NAME -> path
  local d
  for d in $(libdirs "$1"); do
    if [ -e "$d/$2" ]; then readlink -f "$d/$2"; return; fi
  done
  echo "no $2 for $1 in $(libdirs "$1") (arm64: dpkg --add-architecture arm64 && apt-get install libc6:arm64 libgcc-s1:arm64)" >&2; exit 1
}

for arch in "${arches[@]}"; do
  bindir=$(build_binaries "$arch")
  case $arch in
    amd64) triplet=x86_64-linux-gnu strip=strip ;;
    arm64) triplet=aarch64-linux-gnu strip=aarch64-linux-gnu-strip ;;
  esac
  rootfs=$store/rootfs-$arch
  mkdir -p "$rootfs$dest" "$rootfs/lib/$triplet" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  interp=""
  needed=()
  for b in "${binaries[@]}"; do
    install -m 0755 "$bindir/$b" "$rootfs$dest/$b"
    # The release profile keeps line tables for the benches' profiles; the image keeps
    # the symbols (backtraces name functions) and drops the rest (about 9 in 10 bytes).
    "$strip" --strip-debug "$rootfs$dest/$b"
    interp=$(readelf -l "$bindir/$b" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    while read -r lib; do needed+=("$lib"); done < <(readelf -d "$bindir/$b" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
  done
  # The loader where the binaries ask for it; libraries where Debian's loader looks.
  mkdir -p "$rootfs$(dirname "$interp")"
  install -m 0755 "$(find_lib "$arch" "$(basename "$interp")")" "$rootfs$interp"
  for lib in $(printf '%s\n' "${needed[@]}" | grep -vxF "$(basename "$interp")" | sort -u); do
    install -m 0644 "$(find_lib "$arch" "$lib")" "$rootfs/lib/$triplet/$lib"
  done

  ctr=$(bah from --arch "$arch" --os linux scratch)
  bah copy "$ctr" "$rootfs" / >/dev/null
  config=(--arch "$arch" --os linux --label "org.opencontainers.image.version=$version"
    --label "org.opencontainers.image.source=https://example.invalid/ferrolb")
  [ -n "$entrypoint" ] && config+=(--entrypoint "$entrypoint")
  [ -n "$cmd" ] && config+=(--cmd "$cmd")
  [ -n "$user" ] && config+=(--user "$user")
  bah config "${config[@]}" "$ctr"
  image=$(bah commit --format oci --rm "$ctr" "ferrolb-$arch")
  rm -f "$out/ferrolb-$arch.oci.tar"
  bah push "$image" "oci-archive:$out/ferrolb-$arch.oci.tar:$name" >/dev/null
  size=$(du -k "$out/ferrolb-$arch.oci.tar" | cut -f1)
  echo "$out/ferrolb-$arch.oci.tar ($name, linux/$arch, ${size} KiB)"
done
