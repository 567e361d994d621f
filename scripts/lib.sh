# shellcheck shell=bash
# Helpers shared by the scripts in this folder. Sourced, not run: each script
# keeps its own `set -euo pipefail`, changes to the repository root, then
#   . scripts/lib.sh
(return 0 2>/dev/null) || { echo "scripts/lib.sh is sourced by the other scripts, not run" >&2; exit 2; }

# Prints a progress line `==> ...` (to stdout, or to the descriptor in STEP_FD).
step() { printf '==> %s\n' "$*" >&"${STEP_FD:-1}"; }

# Prints `script: message` to stderr.
warn() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

# Prints `script: message` to stderr and exits 1.
die() { warn "$@"; exit 1; }

# Runs a command as root: directly when already root, else through sudo.
sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the named Debian packages that are not installed yet (none: does nothing).
apt_install() {
  local missing=() package
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  step "installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints word FIELD of the first line of `COMMAND --version`; nothing when COMMAND is missing or fails.
tool_version() { # COMMAND FIELD
  { "$1" --version 2>/dev/null || true; } | awk -v field="$2" 'NR == 1 { print $field }'
}
