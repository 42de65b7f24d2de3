{{/* Names: "zeta" for a release called zeta (or zeta-anything), else "<release>-zeta"; at most 63 chars. */}}
{{- define "zeta.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zeta.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "zeta.operator.fullname" -}}
{{- printf "%s-operator" (include "zeta.fullname" .) }}
{{- end }}

{{- define "zeta.router.fullname" -}}
{{- printf "%s-router" (include "zeta.fullname" .) }}
{{- end }}

{{- define "zeta.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zeta.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the router's RoutingPolicy and its ConfigMap live. */}}
{{- define "zeta.router.policyNamespace" -}}
{{- default .Release.Namespace .Values.router.policy.namespace }}
{{- end }}

{{/* Labels of every object. `component` is set by the caller: (dict "ctx" $ "component" "router"). */}}
{{- define "zeta.labels" -}}
helm.sh/chart: {{ include "zeta.chart" .ctx }}
{{ include "zeta.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: zeta
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod template labels: no chart version, so upgrading the chart alone does not restart pods. */}}
{{- define "zeta.podLabels" -}}
{{ include "zeta.selectorLabels" . }}
app.kubernetes.io/part-of: zeta
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "zeta.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zeta.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* The hardened security context every container gets (the image runs as 65532 with a read-only root). */}}
{{- define "zeta.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "zeta.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* nodeSelector, tolerations, affinity, priorityClassName and pull secrets of a pod spec (may be empty). */}}
{{- define "zeta.scheduling" -}}
{{- $c := .component }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The cluster-scoped part of the operator's ClusterRole (also bound on its own in namespaced mode). */}}
{{- define "zeta.operator.clusterScopeRules" -}}
# kopf itself: it watches CRDs to notice its resources appear, and namespaces to follow --namespace patterns.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
