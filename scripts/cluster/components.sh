# The command lines of the cluster's components (sourced by scripts/cluster.sh).
# See docs/local-cluster.md for why each flag is there.

HEALTH_TIMEOUT_SECS=${STREAMJOIN_CLUSTER_TIMEOUT:-180}
SERVICE_CIDR=10.96.0.0/16
# Controllers for what the operator and its tests rely on; no node lifecycle
# (the one node is a local kubelet) and no cloud or certificate signing controllers.
KCM_CONTROLLERS=statefulset-controller,garbage-collector-controller
KCM_CONTROLLERS+=,persistentvolume-binder-controller,persistentvolume-expander-controller
KCM_CONTROLLERS+=,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller
KCM_CONTROLLERS+=,namespace-controller,serviceaccount-controller,serviceaccount-token-controller
KCM_CONTROLLERS+=,root-ca-certificate-publisher-controller,endpoints-controller,endpointslice-controller
KCM_CONTROLLERS+=,deployment-controller,replicaset-controller,job-controller,disruption-controller
KCM_CONTROLLERS+=,pod-garbage-collector-controller,ttl-after-finished-controller,resourcequota-controller
KCM_CONTROLLERS+=,clusterrole-aggregation-controller

start_etcd() {
  local peer=http://127.0.0.1:$ETCD_PEER_PORT
  # No fsync: the data is thrown away with the cluster, and fsync dominates on small disks.
  launch etcd 60 etcd_healthy -- "$ETCD_BIN/etcd" --name=streamjoin --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="$peer" --initial-advertise-peer-urls="$peer" \
    --initial-cluster="streamjoin=$peer" --unsafe-no-fsync --log-level=warn
}

etcd_healthy() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

start_apiserver() {
  # --endpoint-reconciler-type=none: the `kubernetes` Endpoints may not hold a
  # loopback address, so the reconciler would only log errors.
  # Added to the default admission plugins: OwnerReferencesPermissionEnforcement, and
  # NodeRestriction (with the Node authorizer, as kubeadm: a kubelet may only touch
  # its own Node and its pods).
  launch kube-apiserver "$HEALTH_TIMEOUT_SECS" apiserver_ready -- "$K8S_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --cert-dir="$STATE/kube-apiserver" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=OwnerReferencesPermissionEnforcement,NodeRestriction \
    --allow-privileged=true --endpoint-reconciler-type=none --profiling=false
}

apiserver_ready() {
  [ "$(curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz")" = ok ]
}

start_controller_manager() {
  local kc="$STATE/kube-controller-manager.kubeconfig"
  launch kube-controller-manager "$HEALTH_TIMEOUT_SECS" "healthz $KCM_PORT" -- "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/kube-controller-manager" \
    --leader-elect=false --controllers="$KCM_CONTROLLERS" \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" --profiling=false
}

start_scheduler() {
  local kc="$STATE/kube-scheduler.kubeconfig"
  cat >"$STATE/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $kc
leaderElection:
  leaderElect: false
EOF
  launch kube-scheduler "$HEALTH_TIMEOUT_SECS" "healthz $SCHED_PORT" -- "$K8S_BIN/kube-scheduler" --config="$STATE/kube-scheduler.yaml" \
    --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --cert-dir="$STATE/kube-scheduler"
}

# The controller manager and the scheduler serve /healthz with a self-signed certificate.
healthz() { [ "$(curl -fsSk "https://127.0.0.1:$1/healthz")" = ok ]; }
