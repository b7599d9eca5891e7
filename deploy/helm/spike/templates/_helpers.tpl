{{/* The name every object of this release starts with. */}}
{{- define "spike.fullname" -}}
{{- if contains "spike" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-spike" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select one component's pods: pass (list $ "nexus"). */}}
{{- define "spike.selectorLabels" -}}
app.kubernetes.io/name: spike
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every label of one component's objects: pass (list $ "nexus"). */}}
{{- define "spike.labels" -}}
{{ include "spike.selectorLabels" . }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{/* An image reference pinned by digest: pass .Values.images.<name>. */}}
{{- define "spike.image" -}}
{{- if .tag -}}
{{ .repository }}:{{ .tag }}@{{ .digest }}
{{- else -}}
{{ .repository }}@{{ .digest }}
{{- end -}}
{{- end -}}

{{/* The Keepers' API URLs, comma separated. */}}
{{- define "spike.keeperURLs" -}}
{{- $name := printf "%s-keeper" (include "spike.fullname" .) -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.keeper.replicas) -}}
{{- $urls = append $urls (printf "https://%s-%d.%s.%s.svc.%s:8443" $name $i $name $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* The database's host name. */}}
{{- define "spike.dbHost" -}}
{{- if eq .Values.database.mode "cloudnativepg" -}}
{{ include "spike.fullname" . }}-db-rw.{{ .Release.Namespace }}.svc
{{- else -}}
{{ required "database.external.host is required when database.mode is external" .Values.database.external.host }}
{{- end -}}
{{- end -}}

{{/* The database's port. */}}
{{- define "spike.dbPort" -}}
{{- if eq .Values.database.mode "cloudnativepg" -}}5432{{- else -}}{{ .Values.database.external.port }}{{- end -}}
{{- end -}}

{{/* A PostgreSQL URL for one role, without its password (PGPASSWORD): pass (list $ role). */}}
{{- define "spike.dbURL" -}}
{{- $ := index . 0 -}}
postgres://{{ index . 1 }}@{{ include "spike.dbHost" $ }}:{{ include "spike.dbPort" $ }}/{{ $.Values.database.name }}?sslmode=verify-full&sslrootcert=/etc/spike/db-ca/ca.crt
{{- end -}}

{{/* The volume with the database server's CA certificate. */}}
{{- define "spike.dbCAVolume" -}}
- name: db-ca
  secret:
    {{- if eq .Values.database.mode "cloudnativepg" }}
    secretName: {{ include "spike.fullname" . }}-db-ca
    items:
      - key: ca.crt
        path: ca.crt
    {{- else }}
    secretName: {{ required "database.external.caSecret is required when database.mode is external: Nexus connects with sslmode=verify-full" .Values.database.external.caSecret }}
    items:
      - key: {{ .Values.database.external.caKey }}
        path: ca.crt
    {{- end }}
{{- end -}}

{{/* The Workload API volume. */}}
{{- define "spike.workloadAPIVolume" -}}
- name: spire-agent-socket
  {{- if eq .Values.workloadAPI.mode "csi" }}
  csi:
    driver: csi.spiffe.io
    readOnly: true
  {{- else }}
  hostPath:
    path: {{ .Values.workloadAPI.hostPath }}
    type: Directory
  {{- end }}
{{- end -}}

{{/* The SPIFFE_ENDPOINT_SOCKET value. */}}
{{- define "spike.endpointSocket" -}}
unix:///run/spire/agent-sockets/{{ .Values.workloadAPI.socketName }}
{{- end -}}

{{/* A container's security context: no root, nothing writable, no
privilege. Pass (list $ capabilitiesToAdd). */}}
{{- define "spike.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
  {{- with index . 1 }}
  add:
    {{- toYaml . | nindent 4 }}
  {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A pod's security context, for the user the image runs as. */}}
{{- define "spike.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Extra environment variables from a map, refusing the ones the chart sets. */}}
{{- define "spike.extraEnv" -}}
{{- $set := index . 1 -}}
{{- range $k, $v := index . 0 }}
{{- if has $k $set }}
{{- fail (printf "extraEnv: %s is set by the chart; use its value instead" $k) }}
{{- end }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Egress to the cluster DNS: pass .Values.networkPolicy.dns. */}}
{{- define "spike.dnsEgress" -}}
- to:
    - namespaceSelector:
        {{- toYaml .namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .podSelector | nindent 8 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}
