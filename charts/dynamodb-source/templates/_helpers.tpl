{{/* The chart's name. */}}
{{- define "dynamodb-source.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Base name of every object: the release name, prefixed to the chart name unless it already
contains it (`helm install dynamodb-source ...` gives the names of config/).
*/}}
{{- define "dynamodb-source.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The controller's Deployment and ServiceAccount. */}}
{{- define "dynamodb-source.controller" -}}
{{- printf "%s-controller" (include "dynamodb-source.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dynamodb-source.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dynamodb-source.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "dynamodb-source.labels" -}}
{{ include "dynamodb-source.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The controller image: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "dynamodb-source.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}
