{{/* Labels of a component's objects: the selector labels plus Helm's own. */}}
{{- define "ferrolb.labels" -}}
{{ include "ferrolb.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{/* Selector labels: the same as manifests/ and never dependent on values or the
release, since a Deployment's or DaemonSet's selector is immutable on upgrade. */}}
{{- define "ferrolb.selectorLabels" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ferrolb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
