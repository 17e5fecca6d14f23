#!/usr/bin/env bash
# End to end on a real Kubernetes: a kind cluster, PostgreSQL in it, the chart installed with
# a WorkerPool, a burst of signed webhooks from loadsim, and the pool must scale up and back
# down; then a paused pool must hold its size, a PostgreSQL restart must not lose the
# backlog, a deleted pool must take its workers with it, and `helm uninstall` must leave no
# pool or worker behind. Needs docker, kind, kubectl, helm and a Rust toolchain. (Not run in
# pgfleet's own CI: its machines have no Docker engine; see the README.) A cluster named
# $KIND_CLUSTER that already exists is used and kept; one the script creates is deleted at
# the end unless KEEP_CLUSTER=1.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER:-pgfleet-e2e}"
ns=pgfleet
image=pgfleet:e2e
for tool in docker kind kubectl helm cargo; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done

# Everything is built before anything is timed (loadsim too: compiling it during the burst
# would let the scale-up pass before it is checked).
cargo build --release -q -p pgfleet -p pgfleet-tools
pgfleet="${CARGO_TARGET_DIR:-target}/release/pgfleet"

created=0
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
  created=1
fi
pf=""
cleanup() {
  [ -n "$pf" ] && kill "$pf" 2>/dev/null
  if [ "$created" = 1 ] && [ "${KEEP_CLUSTER:-}" != 1 ]; then kind delete cluster --name "$cluster"; fi
}
trap cleanup EXIT

docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
# PostgreSQL in the cluster.
kubectl -n "$ns" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: postgres}
spec:
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      containers:
        - name: postgres
          image: postgres:15
          env:
            - {name: POSTGRES_PASSWORD, value: pgfleet}
            - {name: POSTGRES_DB, value: pgfleet}
          ports: [{containerPort: 5432}]
          readinessProbe:
            exec: {command: ["pg_isready", "-U", "postgres"]}
          # Survives a restart of the container (the PostgreSQL restart below).
          volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: postgres}
spec:
  selector: {app: postgres}
  ports: [{port: 5432}]
YAML
kubectl -n "$ns" rollout status deploy/postgres --timeout=180s

secret="whsec_$(head -c 24 /dev/urandom | base64)"
key="e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
kubectl -n "$ns" create secret generic pgfleet-database \
  --from-literal=url="postgres://postgres:pgfleet@postgres.$ns.svc:5432/pgfleet" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" create secret generic pgfleet-gateway \
  --from-literal=PGFLEET_API_KEYS="$key:admin" \
  --from-literal=PGFLEET_WEBHOOK_SECRETS="payments=$secret" \
  --dry-run=client -o yaml | kubectl apply -f -

helm upgrade --install pgfleet charts/pgfleet --namespace "$ns" --wait --timeout 5m \
  --set image.repository=pgfleet --set image.tag=e2e --set image.pullPolicy=Never \
  --set gateway.replicas=1 --set controller.replicas=2 \
  --set 'workerPools[0].name=default' \
  --set 'workerPools[0].queues[0].name=default' \
  --set 'workerPools[0].concurrency=5' \
  --set 'workerPools[0].minReplicas=1' --set 'workerPools[0].maxReplicas=4' \
  --set 'workerPools[0].autoscaling.targetBacklogPerReplica=50' \
  --set 'workerPools[0].autoscaling.scaleDownStabilizationSeconds=20' \
  --set 'workerPools[0].autoscaling.pollSeconds=2'

replicas() { kubectl -n "$ns" get workerpool default -o jsonpath='{.status.desiredReplicas}'; }
wait_for() { # description, condition command, seconds
  local what="$1" cond="$2" secs="$3"
  for _ in $(seq "$secs"); do eval "$cond" && { echo "kind-e2e: $what"; return 0; }; sleep 1; done
  echo "kind-e2e: timed out waiting for $what" >&2; kubectl -n "$ns" get workerpools,deploy,pods >&2; exit 1
}
wait_for "pool at its minimum" '[ "$(replicas)" = 1 ]' 120

kubectl -n "$ns" port-forward svc/pgfleet-gateway 18080:80 >/dev/null 2>&1 &
pf=$!
sleep 2
api() { curl -fsS -H "Authorization: Bearer $key" -H 'content-type: application/json' "$@"; }
burst() { # N slow jobs
  api -d "{\"jobs\": [$(for i in $(seq "$1"); do printf '{"kind":"sleep","payload":{"ms":200}}'; [ "$i" -lt "$1" ] && printf ,; done)]}" \
    http://127.0.0.1:18080/v1/jobs/batch >/dev/null
}
backlog() { api http://127.0.0.1:18080/v1/queues | python3 -c 'import json,sys; print(sum(q["available"]+q["scheduled"]+q["retryable"]+q["running"] for q in json.load(sys.stdin)))'; }
condition() { kubectl -n "$ns" get workerpool "$1" -o jsonpath="{.status.conditions[?(@.type==\"$2\")].status}"; }

# 1. A burst of slow jobs, then signed webhooks: the pool scales up, then back down.
burst 500; burst 500
"$pgfleet" loadsim --url http://127.0.0.1:18080 --secret "$secret" --rate 100 --duration 10
wait_for "scale-up under the burst" '[ "$(replicas)" -ge 3 ]' 120
wait_for "Deployment caught up" '[ "$(kubectl -n "$ns" get deploy default-workers -o jsonpath="{.status.readyReplicas}")" -ge 3 ]' 180
kubectl -n "$ns" get events --field-selector reason=ScaledUp | grep -q ScaledUp
wait_for "backlog drained and scaled back down" '[ "$(replicas)" = 1 ] && [ "$(backlog)" = 0 ]' 300

# 2. A paused pool holds its size under a burst, and follows the queues again when resumed.
kubectl -n "$ns" patch workerpool default --type merge -p '{"spec":{"paused":true}}'
burst 500
sleep 15
[ "$(replicas)" = 1 ] || { echo "kind-e2e: a paused pool scaled to $(replicas)" >&2; exit 1; }
kubectl -n "$ns" patch workerpool default --type merge -p '{"spec":{"paused":false}}'
wait_for "resumed pool scales up" '[ "$(replicas)" -ge 2 ]' 60

# 3. PostgreSQL restarts (fast shutdown; the container restarts on its data): nothing is lost,
#    the pool is not Degraded afterwards, and the backlog drains.
kubectl -n "$ns" exec deploy/postgres -- su postgres -c 'pg_ctl -D "$PGDATA" stop -m fast' || true
sleep 5
kubectl -n "$ns" rollout status deploy/postgres --timeout=180s
wait_for "backlog drained after the PostgreSQL restart" '[ "$(backlog)" = 0 ]' 300
wait_for "pool not Degraded" '[ "$(condition default Degraded)" = False ]' 60

# 4. A deleted pool takes its workers with it, and is not left Terminating.
kubectl -n "$ns" apply -f - <<YAML
apiVersion: pgfleet.dev/v1alpha1
kind: WorkerPool
metadata: {name: extra}
spec:
  image: $image
  imagePullPolicy: Never
  queues: [{name: extra}]
  database: {secretName: pgfleet-database}
YAML
wait_for "the extra pool's Deployment" 'kubectl -n "$ns" get deploy extra-workers >/dev/null 2>&1' 60
kubectl -n "$ns" delete workerpool extra --wait --timeout=60s
wait_for "the extra pool's workers gone" '! kubectl -n "$ns" get deploy extra-workers >/dev/null 2>&1' 60

# 5. helm uninstall leaves no pool (none Terminating) and no worker Deployment behind.
kill "$pf" 2>/dev/null; pf=""
helm uninstall pgfleet --namespace "$ns" --wait --timeout 5m
wait_for "no WorkerPool left" '[ -z "$(kubectl get workerpools -A -o name)" ]' 120
wait_for "no worker Deployment left" '[ -z "$(kubectl get deploy -A -l app.kubernetes.io/managed-by=pgfleet-controller -o name)" ]' 120
echo "kind-e2e: ok"
