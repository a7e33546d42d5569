# Certificates and kubeconfigs of the local cluster (sourced by scripts/cluster.sh).
# Every certificate is X.509 v3 with explicit key usages: rustls (kube-rs) refuses
# v1 certificates, and Go refuses serving certificates without subjectAltName.

CERT_DAYS=3650

# openssl_ext NAME TEXT: an extension file for `openssl x509 -req`.
openssl_ext() {
  printf '[ext]\n%s\n' "$2" >"$PKI/$1.ext"
}

# make_ca NAME CN: a self-signed CA.
make_ca() {
  local name=$1 cn=$2
  [ -s "$PKI/$name.crt" ] && return
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl_ext "$name" "basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash"
  openssl req -new -key "$PKI/$name.key" -subj "/CN=$cn" |
    openssl x509 -req -signkey "$PKI/$name.key" -days "$CERT_DAYS" \
      -extfile "$PKI/$name.ext" -extensions ext -out "$PKI/$name.crt" 2>/dev/null ||
    fail "making the CA $name"
}

# sign NAME SUBJECT EXTENSIONS [CA]: a key and a certificate signed by CA (default: ca).
sign() {
  local name=$1 subject=$2 ext=$3 ca=${4:-ca}
  [ -s "$PKI/$name.crt" ] && return
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl_ext "$name" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
authorityKeyIdentifier=keyid
$ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subject" |
    openssl x509 -req -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
      -days "$CERT_DAYS" -extfile "$PKI/$name.ext" -extensions ext -out "$PKI/$name.crt" 2>/dev/null ||
    fail "signing the certificate $name ($subject)"
}

client_cert() { sign "$1" "$2" "extendedKeyUsage=clientAuth" "${3:-ca}"; }

make_certs() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  make_ca ca streamjoin-local-ca
  # The request-header (front proxy) CA: the API server publishes it for delegated
  # authentication, which the controller manager and scheduler otherwise keep
  # reporting as missing; aggregated API servers would need it too.
  make_ca front-proxy-ca streamjoin-local-front-proxy-ca
  client_cert front-proxy-client "/CN=front-proxy-client" front-proxy-ca
  # 10.96.0.1 is the `kubernetes` Service's address in --service-cluster-ip-range.
  sign apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  client_cert admin "/O=system:masters/CN=streamjoin-admin"
  client_cert kube-controller-manager "/CN=system:kube-controller-manager"
  client_cert kube-scheduler "/CN=system:kube-scheduler"
  client_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
}

# write_kubeconfig FILE CERT_NAME USER: a kubeconfig with the certificates inline,
# so that it can be copied or read by any client without the state directory.
write_kubeconfig() {
  local file=$1 cert=$2 user=$3
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: streamjoin-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: streamjoin-local
  context:
    cluster: streamjoin-local
    user: $user
current-context: streamjoin-local
EOF
  chmod 600 "$file.tmp"
  mv "$file.tmp" "$file"
}

write_kubeconfigs() {
  write_kubeconfig "$STATE/kubeconfig" admin streamjoin-admin
  write_kubeconfig "$STATE/kube-controller-manager.kubeconfig" kube-controller-manager system:kube-controller-manager
  write_kubeconfig "$STATE/kube-scheduler.kubeconfig" kube-scheduler system:kube-scheduler
}

# A node's kubeconfig (user system:node:NAME in group system:nodes, as the Node
# authorizer expects), for a kubelet that registers NAME.
node_kubeconfig() {
  local node=$1
  [ -n "$node" ] || fail "usage: cluster.sh node-kubeconfig NODE_NAME"
  [ -s "$PKI/ca.key" ] || fail "no cluster state in $STATE (run: cluster.sh up)"
  load_ports
  client_cert "node-$node" "/O=system:nodes/CN=system:node:$node"
  mkdir -p "$STATE/nodes"
  write_kubeconfig "$STATE/nodes/$node.kubeconfig" "node-$node" "system:node:$node"
  echo "$STATE/nodes/$node.kubeconfig"
}
