{{/* The labels of every object: the kustomize base's, and Helm's own. */}}
{{- define "oomtrace.labels" -}}
app.kubernetes.io/name: oomtrace
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The image, its tag the chart's appVersion unless set. */}}
{{- define "oomtrace.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
