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

# Prints `cargo metadata` (format 1) for Cargo.lock as it is, offline when the crates are already here; arguments go to cargo metadata.
cargo_metadata() {
  cargo metadata --format-version 1 --locked --offline --quiet "$@" 2>/dev/null \
    || cargo metadata --format-version 1 --locked --quiet "$@" \
    || { warn "cargo metadata failed (does Cargo.lock need updating?)"; return 1; }
}

# Runs a Node.js script (scripts/setup installs Node.js before anything reads cargo metadata).
_node() {
  command -v node >/dev/null 2>&1 || { warn "node is needed to read cargo metadata (run scripts/setup)"; return 1; }
  node -e "$@"
}

# Prints the one version of crate NAME in the dependency graph Cargo.lock pins; more arguments go to cargo metadata (--no-deps, --filter-platform TARGET).
crate_version() { # NAME [CARGO-METADATA-ARG...]
  local name=$1 metadata
  shift
  metadata=$(cargo_metadata "$@") || return 1
  # shellcheck disable=SC2016 # JavaScript, with its own template strings
  _node '
    const name = process.argv[1];
    const { packages } = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const versions = [...new Set(packages.filter(p => p.name === name).map(p => p.version))];
    if (versions.length !== 1) {
      console.error(`${name}: cargo metadata lists ${versions.length ? "versions " + versions.join(", ") : "no such crate"}, not exactly one`);
      process.exit(1);
    }
    console.log(versions[0]);
  ' "$name" <<<"$metadata"
}

# Prints the directory cargo builds into (CARGO_TARGET_DIR, build.target-dir, or target/ in the workspace).
cargo_target_dir() {
  local metadata
  metadata=$(cargo_metadata --no-deps) || return 1
  _node 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8")).target_directory)' <<<"$metadata"
}

# Retries COMMAND until it succeeds; after SECONDS, or as soon as process PID (unless empty) exits, dies naming SERVICE and showing the end of its LOG.
wait_for() { # SERVICE LOG SECONDS PID COMMAND...
  local service=$1 log=$2 timeout=$3 pid=$4 problem=
  shift 4
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      problem="exited before it was ready"
    elif [ "$SECONDS" -ge "$deadline" ]; then
      problem="was not ready after ${timeout}s"
    fi
    if [ -n "$problem" ]; then
      warn "$service $problem (waited for: $*); its log is $log"
      [ -s "$log" ] && tail -n 20 "$log" | sed 's/^/    /' >&2
      exit 1
    fi
    sleep 0.2
  done
}
