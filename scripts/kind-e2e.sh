#!/usr/bin/env bash
# End to end on a real Kubernetes: a kind cluster, PostgreSQL in it, the chart installed with
# a WorkerPool, a burst of signed webhooks from loadsim, and the pool must scale up and back
# down. Needs docker, kind, kubectl, helm and a Rust toolchain. (Not run in pgfleet's own CI:
# its machines have no Docker engine; see the README.)
set -euo pipefail
cd "$(dirname "$0")/.."
cluster="${KIND_CLUSTER:-pgfleet-e2e}"
ns=pgfleet
image=pgfleet:e2e
for tool in docker kind kubectl helm cargo; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
trap '[ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$cluster"' EXIT

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
trap 'kill $pf 2>/dev/null; [ "${KEEP_CLUSTER:-}" = 1 ] || kind delete cluster --name "$cluster"' EXIT
sleep 2
# A burst of slow jobs, then signed webhooks.
for _ in 1 2; do
  curl -fsS -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d "{\"jobs\": [$(for i in $(seq 500); do printf '{"kind":"sleep","payload":{"ms":200}}'; [ "$i" -lt 500 ] && printf ,; done)]}" \
    http://127.0.0.1:18080/v1/jobs/batch >/dev/null
done
cargo run --release -q -p pgfleet -- loadsim --url http://127.0.0.1:18080 --secret "$secret" --rate 100 --duration 10

wait_for "scale-up under the burst" '[ "$(replicas)" -ge 3 ]' 120
wait_for "Deployment caught up" '[ "$(kubectl -n "$ns" get deploy default-workers -o jsonpath="{.status.readyReplicas}")" -ge 3 ]' 180
kubectl -n "$ns" get events --field-selector reason=ScaledUp | grep -q ScaledUp
wait_for "backlog drained and scaled back down" '[ "$(replicas)" = 1 ]' 300
kubectl -n "$ns" get workerpools
echo "kind-e2e: ok"
