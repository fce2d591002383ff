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

{{/* The webhook's Service, Secret and certificate name. */}}
{{- define "dynamodb-source.webhook" -}}
{{- printf "%s-webhook" (include "dynamodb-source.controller" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Secret holding the webhook's serving certificate: its name differs between a certificate
Helm makes (a Secret Helm owns) and cert-manager's (one cert-manager writes), so switching
between them never has one delete or claim the other's.
*/}}
{{- define "dynamodb-source.webhookSecret" -}}
{{- if .Values.webhook.certManager.enabled -}}
{{- printf "%s-cert-manager-tls" (include "dynamodb-source.webhook" .) -}}
{{- else -}}
{{- printf "%s-tls" (include "dynamodb-source.webhook" .) -}}
{{- end -}}
{{- end }}

{{/*
The webhook's serving certificate as YAML (ca, cert, key: base64 PEM): the one in the release's
Secret when there is one (so an upgrade keeps it), else a new CA and a certificate it signs for
the Service's names. Rendered the same within one run: the result is memoized in .Values.
*/}}
{{- define "dynamodb-source.webhookCertificate" -}}
{{- if not (hasKey .Values.webhook "generated") -}}
{{- $name := include "dynamodb-source.webhook" . -}}
{{- $host := printf "%s.%s.svc" $name .Release.Namespace -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "dynamodb-source.webhookSecret" .) -}}
{{- $data := dig "data" dict $secret -}}
{{- if and (hasKey $data "ca.crt") (hasKey $data "tls.crt") (hasKey $data "tls.key") -}}
{{- $_ := set .Values.webhook "generated" (dict "ca" (index $data "ca.crt") "cert" (index $data "tls.crt") "key" (index $data "tls.key")) -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" $name) 3650 -}}
{{- $leaf := genSignedCert $host nil (list $host (printf "%s.cluster.local" $host)) 3650 $ca -}}
{{- $_ := set .Values.webhook "generated" (dict "ca" ($ca.Cert | b64enc) "cert" ($leaf.Cert | b64enc) "key" ($leaf.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- toYaml .Values.webhook.generated -}}
{{- end }}
