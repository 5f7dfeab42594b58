{{/*
Names and labels. The operator pods always carry
app.kubernetes.io/name=chatscale-operator: the NetworkPolicies the operator
writes for every ChatCluster admit the operator by that label (admin port
9090 for scrapes and drains, Redis 6379 for INFO), so it is not overridable.
*/}}
{{- define "chatscale-operator.name" -}}
chatscale-operator
{{- end }}

{{- define "chatscale-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "chatscale-operator" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-chatscale-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "chatscale-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatscale-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chatscale-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "chatscale-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatscale
{{- end }}

{{- define "chatscale-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chatscale-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chatscale-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions come from ONE list in its code (operator/src/rbac.rs):
files/clusterrole.yaml is exactly what `chatscale-operator rbac` prints
(`make crds` regenerates it; operator/tests/chart.rs checks it). The chart
splits it: the Lease rule (leader election) becomes a Role in the release
namespace, where the Lease lives, instead of write access to every Lease in
the cluster; every other rule stays in the ClusterRole.
*/}}
{{- define "chatscale-operator.rules" -}}
{{- (.Files.Get "files/clusterrole.yaml" | fromYaml).rules | toYaml }}
{{- end }}

{{- define "chatscale-operator.clusterRules" -}}
{{- range $rule := (include "chatscale-operator.rules" . | fromYamlArray) }}
{{- if not (has "coordination.k8s.io" $rule.apiGroups) }}
- {{ toYaml $rule | indent 2 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{- define "chatscale-operator.leaseRules" -}}
{{- range $rule := (include "chatscale-operator.rules" . | fromYamlArray) }}
{{- if has "coordination.k8s.io" $rule.apiGroups }}
- {{ toYaml $rule | indent 2 | trim }}
{{- end }}
{{- end }}
{{- end }}
