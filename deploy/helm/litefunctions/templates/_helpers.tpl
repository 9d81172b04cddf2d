{{/* Labels every object carries. */}}
{{- define "lf.labels" -}}
app.kubernetes.io/part-of: litefunctions
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* A component's selector labels: (dict "root" $ "name" "lf-nats") */}}
{{- define "lf.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* An image reference by digest: (dict "root" $ "image" .Values.images.nats "name" "nats") */}}
{{- define "lf.image" -}}
{{- $image := .image -}}
{{- if not $image -}}
{{- fail (printf "images.%s: missing (repository and digest)" .name) -}}
{{- end -}}
{{- if not (regexMatch "^sha256:[a-f0-9]{64}$" (default "" $image.digest)) -}}
{{- fail (printf "images.%s.digest: %q is not a digest (sha256: and 64 lowercase hex digits); images are referenced by digest only" .name (default "" $image.digest)) -}}
{{- end -}}
{{- $registry := .root.Values.global.imageRegistry -}}
{{- if $registry -}}
{{- printf "%s/%s@%s" $registry $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, pod level. */}}
{{- define "lf.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.runAsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The restricted Pod Security Standard, container level. */}}
{{- define "lf.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "lf.natsUrl" -}}
nats://lf-nats.{{ .Release.Namespace }}.svc:4222
{{- end -}}

{{- define "lf.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pods of the platform itself (the only clients of redis-server and PostgreSQL). */}}
{{- define "lf.platformClients" -}}
- podSelector:
    matchExpressions:
      - key: app.kubernetes.io/name
        operator: In
        values: [lf-ingestor, lf-operator]
      - key: app.kubernetes.io/instance
        operator: In
        values: [{{ .Release.Name | quote }}]
{{- end -}}
