# shellcheck shell=bash
# A real node for the test control plane (tests/cluster/up --node=real): a private containerd,
# runc, a loopback-only CNI and a kubelet named 127.0.0.1, all under DIR/node. Sourced by up
# and down, after lib.sh. See README.md ("A real node") for what it sets up and why.
#
# Host state it touches, recorded when it starts and restored when it stops (node_stop):
# the sysctls the kubelet changes, the fixed paths it and containerd use outside DIR, the
# kubelet's cgroups, and the Node object. One node per machine: the kubelet's cgroups and
# sysctls are global, so a second start is refused while the first one's processes live.

# The node's name, as the kubelet registers it: an IP given as --hostname-override becomes
# the node's InternalIP without the kubelet's "no loopback node IP" check.
NODE_NAME=127.0.0.1
NODE_RUNTIME_CLASS=ddbsrc-host-network
NODE_NAMESPACE_LABEL=ddbsrc-node.test/host-network
# A labelled namespace with nothing in it, for checking that the policies apply.
NODE_PROBE_NAMESPACE=ddbsrc-node-probe
# Records which directory holds the one running node (see node_claim).
NODE_ACTIVE_FILE=${DYNAMODB_SOURCE_NODE_ACTIVE_FILE:-/run/dynamodb-source-node.active}
# The sysctls the kubelet sets (pitfall: it changes them on the host).
NODE_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
# Fixed host paths that --root-dir does not move; removed at stop only if they did not exist
# at start (and, for directories, only when left empty).
NODE_HOST_PATHS=(
  /var/lib/kubelet/device-plugins/kubelet.sock
  /var/lib/kubelet/device-plugins
  /var/lib/kubelet/plugins_registry
  /var/lib/kubelet/plugins
  /var/lib/kubelet/pod-resources
  /var/lib/kubelet
  /var/log/containers
  /var/log/pods
  /run/containerd/s
  /run/containerd
  /run/netns
)

# The pause image containerd's CRI uses as sandbox: Kubernetes' own pause.c (from the
# k8s.io/kubernetes module of build/go.mod) compiled statically, tag from its Makefile.
pause_source_dir() { # K8S_VERSION
  local modcache
  modcache=$(cd "$CLUSTER_HERE/build" && go env GOMODCACHE)
  [[ -f $modcache/k8s.io/kubernetes@$1/build/pause/linux/pause.c ]] ||
    (cd "$CLUSTER_HERE/build" && go mod download k8s.io/kubernetes >&2)
  printf '%s\n' "$modcache/k8s.io/kubernetes@$1/build/pause"
}

# node_build K8S_BIN K8S_VERSION: the Debian packages (node-deps), and the pause image archive
# K8S_BIN/pause.tar (cached). The kubelet is built by up's build_bins.
node_build() {
  local bin=$1 version=$2 src tag work
  "$CLUSTER_HERE/node-deps" || die "the real node's packages are missing (see above)"
  [[ -f $bin/pause.tar && -f $bin/pause.tag ]] && return 0
  (
    flock 9
    [[ -f $bin/pause.tar && -f $bin/pause.tag ]] && exit 0
    command -v go >/dev/null || die "go is needed to find pause.c (k8s.io/kubernetes $version)"
    src=$(pause_source_dir "$version")
    tag=$(awk '$1 == "TAG" && $2 == "?=" { print $3; exit }' "$src/Makefile")
    [[ -n $tag ]] || die "cannot read the pause TAG from $src/Makefile"
    work=$(mktemp -d "${TMPDIR:-/tmp}/dynamodb-source-pause.XXXXXX")
    trap 'buildah --root "$work/root" --runroot "$work/runroot" --storage-driver vfs rm --all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
    gcc -Os -static -Wall -Werror -DVERSION="v$tag-dynamodb-source" \
      -o "$work/pause" "$src/linux/pause.c"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$work/Dockerfile"
    buildah --root "$work/root" --runroot "$work/runroot" --storage-driver vfs \
      bud --quiet --timestamp 0 --format docker -t "registry.k8s.io/pause:$tag" "$work" >&2
    buildah --root "$work/root" --runroot "$work/runroot" --storage-driver vfs \
      push --quiet "registry.k8s.io/pause:$tag" "docker-archive:$work/pause.tar:registry.k8s.io/pause:$tag" >&2
    mv -f "$work/pause.tar" "$bin/pause.tar"
    printf '%s\n' "$tag" >"$bin/pause.tag"
    log "built the pause image registry.k8s.io/pause:$tag from $src/linux/pause.c"
  ) 9>"$bin/.pause.lock"
}

# node_claim DIR: refuse to start while another node's processes live.
node_claim() {
  local dir=$1 other name pid exe
  if [[ -f $NODE_ACTIVE_FILE ]]; then
    other=$(cat "$NODE_ACTIVE_FILE")
    if [[ $other != "$dir" && -d $other/pids ]]; then
      for name in kubelet containerd; do
        [[ -f $other/pids/$name ]] || continue
        read -r pid exe <"$other/pids/$name"
        cluster_pid_is_ours "$pid" "$exe" &&
          die "a real node already runs (cluster $other); one per machine: stop it first with tests/cluster/down $other"
      done
    fi
  fi
  printf '%s\n' "$dir" >"$NODE_ACTIVE_FILE"
}

# Records the host state node_stop restores.
node_record_host() {
  local n=$1 s p
  : >"$n/sysctls"
  for s in "${NODE_SYSCTLS[@]}"; do
    printf '%s %s\n' "$s" "$(sysctl -n "$s")" >>"$n/sysctls"
  done
  : >"$n/host-paths"
  for p in "${NODE_HOST_PATHS[@]}"; do
    [[ -e $p ]] && printf '%s\n' "$p" >>"$n/host-paths"
  done
  : >"$n/cgroups"
  for p in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $p ]] && printf '%s\n' "$p" >>"$n/cgroups"
  done
  # The symlinks and shim sockets present before are not ours.
  find /var/log/containers /run/containerd/s -mindepth 1 -maxdepth 1 2>/dev/null | sort >"$n/host-entries" || true
}

# node_start DIR API_PORT KUBELET_PORT HEALTHZ_PORT K8S_BIN: containerd, the pause image,
# the kubelet; waits for the node to be Ready. Uses up's start/wait_for/kc helpers.
node_start() {
  local dir=$1 api_port=$2 kubelet_port=$3 healthz_port=$4 bin=$5
  local n=$dir/node pki=$dir/pki tag
  tag=$(cat "$bin/pause.tag")
  mkdir -p "$n"/{containerd/root,containerd/state,runc,opt,cni,kubelet,pod-logs,volume-plugins}
  node_claim "$dir"
  node_record_host "$n"

  cat >"$n/cni/10-loopback.conflist" <<'EOF'
{"cniVersion": "0.4.0", "name": "ddbsrc-loopback", "plugins": [{"type": "loopback"}]}
EOF
  cat >"$n/containerd.toml" <<EOF
version = 2
root = "$n/containerd/root"
state = "$n/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$n/containerd.sock"
[ttrpc]
  address = "$n/containerd.ttrpc.sock"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$n/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:$tag"
  # Nothing here may lower an oom_score_adj (no CAP_SYS_RESOURCE on such VMs); without this
  # every sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$n/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$n/cni"
    max_conf_num = 1
EOF
  start containerd "$(command -v containerd)" --config "$n/containerd.toml" --log-level warn
  wait_for "containerd" "$READY_TIMEOUT" ctr --address "$n/containerd.sock" version
  ctr --address "$n/containerd.sock" -n k8s.io images import --no-unpack=false "$bin/pause.tar" >&2 ||
    die "importing the pause image failed"

  # The kubelet's identity (system:node:127.0.0.1, so the Node authorizer lets it manage its
  # own Node and pods) and its serving certificate (IP SAN 127.0.0.1; the apiserver checks it
  # for logs/exec against the cluster CA).
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" client
  cert kubelet-serving "/CN=$NODE_NAME" server
  kubeconfig "$dir/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet
  cat >"$n/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$n/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
protectKernelDefaults: false
podLogsDir: $n/pod-logs
volumePluginDir: $n/volume-plugins
resolvConf: /etc/resolv.conf
# Local images cannot be pulled again: never collect them. And never evict: the host's disk
# is shared and may be nearly full (CI machines have been seen with <1% free); under a
# threshold the kubelet taints the node disk-pressure:NoSchedule and evicts its pods, and a
# Deployment's replacement pod then stays Pending. "0%" removes a signal's threshold (the
# kubelet ignores 0% and 100%), so the node never reports pressure.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
  pid.available: "0%"
serializeImagePulls: false
registerNode: true
EOF
  kc delete node "$NODE_NAME" --ignore-not-found --wait=false >&2 # a stale one is cordoned
  start kubelet "$bin/kubelet" \
    --config="$n/kubelet.yaml" \
    --kubeconfig="$dir/kubelet.kubeconfig" \
    --root-dir="$n/kubelet" \
    --hostname-override="$NODE_NAME" \
    --v=1
  wait_for "node $NODE_NAME Ready" "$READY_TIMEOUT" node_ready "$NODE_NAME"

  # Pods in labelled namespaces run in the host's network namespace (the loopback-only CNI
  # gives other pods no IP), reach the apiserver on 127.0.0.1, and are exempt from
  # PodSecurity through their RuntimeClass (restricted forbids hostNetwork).
  kc apply -f - >&2 <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: $NODE_RUNTIME_CLASS
handler: runc
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata:
  name: $NODE_RUNTIME_CLASS
spec:
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  matchConstraints:
    resourceRules:
      - apiGroups: [""]
        apiVersions: [v1]
        operations: [CREATE]
        resources: [pods]
  mutations:
    - patchType: ApplyConfiguration
      applyConfiguration:
        expression: >
          Object{
            spec: Object.spec{
              hostNetwork: true,
              dnsPolicy: "Default",
              runtimeClassName: "$NODE_RUNTIME_CLASS",
              containers: object.spec.containers.map(c, Object.spec.containers{
                name: c.name,
                env: [
                  Object.spec.containers.env{name: "KUBERNETES_SERVICE_HOST", value: "127.0.0.1"},
                  Object.spec.containers.env{name: "KUBERNETES_SERVICE_PORT", value: "$api_port"}
                ]
              })
            }
          }
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: $NODE_RUNTIME_CLASS
spec:
  policyName: $NODE_RUNTIME_CLASS
  matchResources:
    namespaceSelector:
      matchLabels:
        $NODE_NAMESPACE_LABEL: "true"
---
# In the host's network namespace two pods of one Deployment cannot run side by side on
# this one node (they listen on the same port), so a rolling update's surge pod would
# never start: Deployments in labelled namespaces are recreated instead.
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicy
metadata:
  name: $NODE_RUNTIME_CLASS-recreate
spec:
  failurePolicy: Fail
  reinvocationPolicy: IfNeeded
  matchConstraints:
    resourceRules:
      - apiGroups: [apps]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [deployments]
  mutations:
    - patchType: JSONPatch
      jsonPatch:
        expression: >
          [JSONPatch{op: "replace", path: "/spec/strategy", value: {"type": "Recreate"}}]
---
apiVersion: admissionregistration.k8s.io/v1beta1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: $NODE_RUNTIME_CLASS-recreate
spec:
  policyName: $NODE_RUNTIME_CLASS-recreate
  matchResources:
    namespaceSelector:
      matchLabels:
        $NODE_NAMESPACE_LABEL: "true"
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NODE_PROBE_NAMESPACE
  labels:
    $NODE_NAMESPACE_LABEL: "true"
EOF
  # The apiserver loads admission policies in the background: a pod admitted before it has
  # them would run unmutated, in a network namespace of its own where the apiserver is out
  # of reach, and crash until the test gives up. Ready means a dry run comes out mutated.
  wait_for "the host-network admission policies" "$READY_TIMEOUT" node_policies_active
}

# Whether a server-side dry run of a pod and a Deployment in a labelled namespace comes
# out of admission with the host network and the Recreate strategy.
node_policies_active() {
  kc create --dry-run=server -n "$NODE_PROBE_NAMESPACE" -o jsonpath='{.spec.hostNetwork}' -f - <<EOF |
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  containers: [{name: probe, image: probe.invalid/probe}]
EOF
    grep -qx true || return 1
  kc create --dry-run=server -n "$NODE_PROBE_NAMESPACE" -o jsonpath='{.spec.strategy.type}' -f - <<EOF |
apiVersion: apps/v1
kind: Deployment
metadata: {name: probe}
spec:
  selector: {matchLabels: {app: probe}}
  template:
    metadata: {labels: {app: probe}}
    spec:
      containers: [{name: probe, image: probe.invalid/probe}]
EOF
    grep -qx Recreate
}

# Our leftovers under the host paths: what was not there when the node started.
node_new_entries() { # NODE-DIR
  comm -13 "$1/host-entries" <(find /var/log/containers /run/containerd/s -mindepth 1 -maxdepth 1 2>/dev/null | sort)
}

# node_stop_process DIR NAME: SIGTERM, up to 10 s, then SIGKILL, to the process up recorded.
node_stop_process() {
  local dir=$1 name=$2 pid exe
  [[ -f $dir/pids/$name ]] || return 0
  read -r pid exe <"$dir/pids/$name"
  if cluster_pid_is_ours "$pid" "$exe"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do cluster_pid_is_ours "$pid" "$exe" || break; sleep 0.1; done
    cluster_pid_is_ours "$pid" "$exe" && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$dir/pids/$name"
}

# node_stop DIR [KUBECONFIG]: stops the pods' containers, the kubelet and containerd, and
# restores the host: sysctls, fixed paths, cgroups, mounts, the Node object. Never fails
# (a warning per thing it could not undo).
node_stop() {
  local dir=$1 n=$1/node sock entry name value p m
  [[ -d $n ]] || return 0
  sock=$n/containerd.sock
  # The kubelet first, so it does not restart what is killed next.
  node_stop_process "$dir" kubelet
  # Every container the CRI made (pods and their sandboxes), then containerd.
  if [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1; then
    local -a tasks
    mapfile -t tasks < <(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null)
    for entry in "${tasks[@]}"; do
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$entry" >/dev/null 2>&1 || true
    done
    for entry in "${tasks[@]}"; do
      ctr --address "$sock" -n k8s.io tasks rm -f "$entry" >/dev/null 2>&1 || true
    done
    mapfile -t tasks < <(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null)
    for entry in "${tasks[@]}"; do
      ctr --address "$sock" -n k8s.io containers rm "$entry" >/dev/null 2>&1 || true
    done
  fi
  node_stop_process "$dir" containerd
  # Shims of our containerd that outlived it (they name our socket on their command line).
  for p in /proc/[0-9]*; do
    [[ -r $p/cmdline ]] || continue
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $sock "; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  # Mounts under the node directory (rootfs, shm, projected volumes), deepest first.
  while read -r m; do
    umount -l "$m" 2>/dev/null || log "WARNING: could not unmount $m"
  done < <(awk -v d="$n/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  # The kubelet's cgroups (empty once the pods are gone), deepest first.
  for p in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [[ -d $p ]] || continue
    grep -qxF "$p" "$n/cgroups" 2>/dev/null && continue
    find "$p" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [[ -d $p ]] && log "WARNING: could not remove cgroup $p"
  done
  # Sysctls as they were.
  if [[ -f $n/sysctls ]]; then
    while read -r name value; do
      [[ $(sysctl -n "$name" 2>/dev/null) == "$value" ]] ||
        sysctl -q -w "$name=$value" >/dev/null || log "WARNING: could not restore $name=$value"
    done <"$n/sysctls"
  fi
  # Our symlinks and sockets, then the fixed paths that did not exist before, if empty.
  if [[ -f $n/host-entries ]]; then
    node_new_entries "$n" | while read -r entry; do rm -rf -- "$entry"; done
  fi
  if [[ -f $n/host-paths ]]; then
    for p in "${NODE_HOST_PATHS[@]}"; do
      grep -qxF "$p" "$n/host-paths" && continue
      if [[ -S $p ]]; then rm -f "$p"; elif [[ -d $p ]]; then rmdir "$p" 2>/dev/null || true; fi
    done
  fi
  # The Node object: a stopped kubelet leaves it cordoned.
  if [[ -n ${2:-} && -f ${2:-} ]]; then
    kubectl --kubeconfig "$2" --request-timeout=10s delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  fi
  [[ -f $NODE_ACTIVE_FILE && $(cat "$NODE_ACTIVE_FILE") == "$dir" ]] && rm -f "$NODE_ACTIVE_FILE"
  rm -rf "$n" 2>/dev/null || log "WARNING: could not remove $n entirely"
  return 0
}
