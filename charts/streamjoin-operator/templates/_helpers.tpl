{{/* Chart name. */}}
{{- define "streamjoin.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects. */}}
{{- define "streamjoin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the operator pods. */}}
{{- define "streamjoin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamjoin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "streamjoin.labels" -}}
{{ include "streamjoin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamjoin
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "streamjoin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "streamjoin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "streamjoin.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Labels of the runtime pods the operator creates (operator/src/build/mod.rs). */}}
{{- define "streamjoin.runtimeSelectorLabels" -}}
app.kubernetes.io/name: streamjoin
app.kubernetes.io/managed-by: streamjoin-operator
{{- end -}}

{{/*
What the operator does in a namespace where it runs jobs, one rule per API group
and set of verbs (NetworkPolicies only with networkPolicy.generate). Children are
written with server-side apply, which is
authorised as patch, and as create when the object does not exist yet. Nothing
is deleted: children go through their owner references.
*/}}
{{- define "streamjoin.namespacedRules" -}}
- apiGroups: ["streamjoin.dev"]
  resources: ["streamjoinjobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["streamjoin.dev"]
  resources: ["streamjoinjobs/status"]
  verbs: ["get", "patch"]
# Children carry an owner reference with blockOwnerDeletion; with the
# OwnerReferencesPermissionEnforcement admission plugin that needs update on the
# owner's finalizers.
- apiGroups: ["streamjoin.dev"]
  resources: ["streamjoinjobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Savepoint cleanup Jobs (run while no runtime pod does); the TTL controller removes them.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "patch"]
# The per-job admin token Secret, created only: its token is derived from the
# operator's key, so the operator never reads a Secret here (get, list, watch,
# patch and update would all return Secret data).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.networkPolicy.generate }}
# The per-job NetworkPolicy of the admin port: watched, and written with
# server-side apply; never read by name or deleted.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "watch", "create", "patch"]
{{- end }}
{{- end -}}

{{/* Cluster-scoped reads: whether a StorageClass allows volume expansion. */}}
{{- define "streamjoin.clusterRules" -}}
- apiGroups: ["storage.k8s.io"]
  resources: ["storageclasses"]
  verbs: ["get"]
{{- end -}}

{{/* The operator pods' selector labels as key=value,... (sorted by key). */}}
{{- define "streamjoin.selectorString" -}}
{{- $pairs := list -}}
{{- range $k, $v := include "streamjoin.selectorLabels" . | fromYaml -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
