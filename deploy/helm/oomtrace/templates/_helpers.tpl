{{/* The labels of every object: the kustomize base's, and Helm's own. */}}
{{- define "oomtrace.labels" -}}
app.kubernetes.io/name: oomtrace
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The image by digest when one is set (the release's packaged chart
sets it), else by tag: the chart's appVersion unless set. */}}
{{- define "oomtrace.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}


{{/* The runtime's socket directory below the host's /run, by preset;
empty for none. */}}
{{- define "oomtrace.runtimeDir" -}}
{{- $dirs := dict "containerd" "containerd" "crio" "crio" "k3s" "k3s/containerd" "none" "" -}}
{{- if not (hasKey $dirs .Values.runtime) -}}
{{- fail (printf "runtime must be containerd, crio, k3s or none, not %q" .Values.runtime) -}}
{{- end -}}
{{- get $dirs .Values.runtime -}}
{{- end -}}

{{/* The kubelet's config file and drop-in directory on the node: the
values when set, else the platform's. */}}
{{- define "oomtrace.platform" -}}
{{- $presets := dict
  "kubeadm" (dict "config" "/var/lib/kubelet/config.yaml" "dir" "")
  "eks" (dict "config" "/etc/kubernetes/kubelet/config.json" "dir" "/etc/kubernetes/kubelet/config.json.d")
  "eks-al2" (dict "config" "/etc/kubernetes/kubelet/kubelet-config.json" "dir" "")
  "gke" (dict "config" "/home/kubernetes/kubelet-config.yaml" "dir" "")
  "aks" (dict "config" "/etc/default/kubeletconfig.json" "dir" "") -}}
{{- if not (hasKey $presets .Values.platform) -}}
{{- fail (printf "platform must be kubeadm, eks, eks-al2, gke or aks, not %q" .Values.platform) -}}
{{- end -}}
{{- get $presets .Values.platform | toJson -}}
{{- end -}}
{{- define "oomtrace.kubeletConfig" -}}
{{- .Values.kubeletConfig | default (include "oomtrace.platform" . | fromJson).config -}}
{{- end -}}
{{- define "oomtrace.kubeletConfigDir" -}}
{{- .Values.kubeletConfigDir | default (include "oomtrace.platform" . | fromJson).dir -}}
{{- end -}}
