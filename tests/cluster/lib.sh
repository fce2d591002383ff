# shellcheck shell=bash
# shellcheck disable=SC2034  # variables are used by the scripts that source this file
# Shared helpers for tests/cluster/{up,down,smoke,node-deps}. Sourced, not executed.

CLUSTER_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Marker file that identifies a directory created by `up` (down refuses anything else).
CLUSTER_MARKER=.dynamodb-source-cluster
# Start order; down stops in reverse.
CLUSTER_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok containerd kubelet)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# True if $pid is alive (not a zombie) and runs the binary $exe recorded for it, so a
# recycled pid is never signalled.
cluster_pid_is_ours() {
  local pid=$1 exe=$2 stat actual
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -d /proc/$pid ]] || return 0 # no procfs: trust the pid file
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]] || return 1
  actual=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ $actual == "$exe" || $actual == "$exe (deleted)" ]]
}

# Stop the processes recorded in $1/pids (reverse start order): SIGTERM, wait up to
# $2 seconds, then SIGKILL and wait again.
cluster_stop_dir() {
  local dir=$1 grace=${2:-20} name pid exe
  local -a pids=()
  [[ -d $dir/pids ]] || return 0
  for ((i = ${#CLUSTER_COMPONENTS[@]} - 1; i >= 0; i--)); do
    name=${CLUSTER_COMPONENTS[i]}
    [[ -f $dir/pids/$name ]] || continue
    read -r pid exe <"$dir/pids/$name" || true
    if cluster_pid_is_ours "$pid" "$exe"; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"$'\t'"$exe"$'\t'"$name")
    fi
  done
  local deadline=$((SECONDS + grace)) entry killed=0
  local -a alive
  while :; do
    alive=()
    for entry in "${pids[@]}"; do
      IFS=$'\t' read -r pid exe name <<<"$entry"
      cluster_pid_is_ours "$pid" "$exe" && alive+=("$entry")
    done
    ((${#alive[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      ((killed)) && { log "WARNING: still running after SIGKILL: ${alive[*]}"; break; }
      for entry in "${alive[@]}"; do
        IFS=$'\t' read -r pid exe name <<<"$entry"
        log "$name (pid $pid) did not exit after ${grace}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      done
      killed=1 deadline=$((SECONDS + 5)) pids=("${alive[@]}")
      continue
    fi
    sleep 0.1
  done
  rm -rf "$dir/pids"
}
