#!/usr/bin/env bash
# Shared by the bootstrap scripts: argument parsing, --dry-run, checks, and the firewall.
# Every action goes through `run`, so --dry-run prints each one instead of doing it.
# FERROLB_ROOT prefixes the files the scripts write (the tests point it at a scratch dir).

set -euo pipefail

DRY_RUN=0
FERROLB_ROOT=${FERROLB_ROOT:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MANIFESTS=${MANIFESTS:-$(cd "$HERE/.." && pwd)}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# Runs a command, or prints it under --dry-run.
run() {
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

# Writes stdin to a file (under FERROLB_ROOT), or prints what would be written.
write_file() {
  local path="$FERROLB_ROOT$1" content
  content=$(cat)
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ write %s:\n%s\n' "$path" "$content"
  else
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" >"$path"
  fi
}

parse_common() {
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument: $arg (try --help)" ;;
    esac
  done
  if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or with --dry-run to see what would be done)"
  fi
}

# Fails with the variable's purpose when it is unset or empty.
need() {
  local name=$1 purpose=$2
  [ -n "${!name:-}" ] || die "$name is not set: $purpose"
}

# Opens TCP/UDP ports with whichever firewall is active (ufw or firewalld); says so if none.
open_ports() {
  local spec
  if command -v ufw >/dev/null && ufw status 2>/dev/null | grep -q "Status: active"; then
    for spec in "$@"; do run ufw allow "$spec"; done
  elif command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then
    for spec in "$@"; do run firewall-cmd --permanent --add-port="$spec"; done
    run firewall-cmd --reload
  else
    log "no active firewall (ufw or firewalld): make sure these are open between the nodes: $*"
  fi
}

# Allows traffic from the pod and Service networks (ufw/firewalld), which the CNI needs.
trust_cidrs() {
  local cidr
  if command -v ufw >/dev/null && ufw status 2>/dev/null | grep -q "Status: active"; then
    for cidr in "$@"; do run ufw allow from "$cidr"; done
  elif command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then
    for cidr in "$@"; do run firewall-cmd --permanent --zone=trusted --add-source="$cidr"; done
    run firewall-cmd --reload
  fi
}

# FerroLB's own ports: membership (TCP/UDP 7946, as MetalLB) and metrics (7472).
# shellcheck disable=SC2034 # used by the scripts that source this file
FERROLB_PORTS=(7946/tcp 7946/udp 7472/tcp)
