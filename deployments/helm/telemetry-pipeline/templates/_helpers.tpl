{{/*
The release's prefix for every name: <release>-nexus, or the release name alone when it already
contains "nexus" (a release called nexus gives nexus-etcd, nexus-gateway, ... as in deployments/k8s).
*/}}
{{- define "nexus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nexus" .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nexus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of every object; call with (dict "ctx" $ "component" "gateway"). `app` is the release's
name, on every pod too: `kubectl get pods -l app=nexus-pipeline` lists a release's pods (the seed's
step 4); it is in no selector, so it can change without recreating anything.
*/}}
{{- define "nexus.labels" -}}
{{ include "nexus.selectorLabels" . }}
app: {{ .ctx.Release.Name }}
app.kubernetes.io/part-of: nexus
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "nexus.chart" .ctx }}
{{- end -}}

{{/* Labels of an object of no one component (the PrometheusRule, the default deny). */}}
{{- define "nexus.commonLabels" -}}
app: {{ .Release.Name }}
app.kubernetes.io/name: {{ default "nexus" .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: nexus
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "nexus.chart" . }}
{{- end -}}

{{/* The labels that select a component's pods. */}}
{{- define "nexus.selectorLabels" -}}
app.kubernetes.io/name: {{ default "nexus" .ctx.Values.nameOverride }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The Nexus image: image.repository:image.tag (the chart's appVersion by default). */}}
{{- define "nexus.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Pod security context of the Nexus pods (uid 10001 of the image). */}}
{{- define "nexus.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context of every container of the chart; call with the uid. */}}
{{- define "nexus.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Names of the objects the components share. */}}
{{- define "nexus.etcdName" -}}{{ include "nexus.fullname" . }}-etcd{{- end -}}
{{- define "nexus.postgresqlName" -}}{{ include "nexus.fullname" . }}-postgresql{{- end -}}
{{- define "nexus.dbRolesSecret" -}}
{{- default (printf "%s-db-roles" (include "nexus.fullname" .)) .Values.postgresql.roles.existingSecret -}}
{{- end -}}

{{/* external when postgresql.enabled is false or postgresql.mode is external. */}}
{{- define "nexus.postgresqlMode" -}}
{{- if .Values.postgresql.enabled -}}{{ .Values.postgresql.mode }}{{- else -}}external{{- end -}}
{{- end -}}

{{/* Where the components reach PostgreSQL. */}}
{{- define "nexus.dbHost" -}}
{{- if eq (include "nexus.postgresqlMode" .) "external" -}}
{{- required "postgresql.external.host is required with postgresql.mode external" .Values.postgresql.external.host -}}
{{- else -}}
{{- include "nexus.postgresqlName" . }}-rw
{{- end -}}
{{- end -}}
{{- define "nexus.dbPort" -}}
{{- if eq (include "nexus.postgresqlMode" .) "external" -}}{{ .Values.postgresql.external.port }}{{- else -}}5432{{- end -}}
{{- end -}}
{{- define "nexus.dbName" -}}
{{- if eq (include "nexus.postgresqlMode" .) "external" -}}{{ .Values.postgresql.external.database }}{{- else -}}{{ .Values.postgresql.database }}{{- end -}}
{{- end -}}

{{/* The Secret holding the administrator's password for nexus migrate --create-roles. */}}
{{- define "nexus.dbAdminSecret" -}}
{{- $mode := include "nexus.postgresqlMode" . -}}
{{- if eq $mode "cloudnative-pg" -}}
{{- include "nexus.postgresqlName" . }}-superuser
{{- else if eq $mode "statefulset" -}}
{{- default (printf "%s-postgresql-admin" (include "nexus.fullname" .)) .Values.postgresql.statefulset.existingSecret -}}
{{- else -}}
{{- required "postgresql.external.existingSecret is required with postgresql.mode external" .Values.postgresql.external.existingSecret -}}
{{- end -}}
{{- end -}}
{{- define "nexus.dbAdminUser" -}}
{{- if eq (include "nexus.postgresqlMode" .) "external" -}}{{ .Values.postgresql.external.adminUser }}{{- else -}}postgres{{- end -}}
{{- end -}}

{{/* The role prefix of nexus migrate --create-roles (DB_ROLE_PREFIX). */}}
{{- define "nexus.rolePrefix" -}}
{{- default "nexus" (get .Values.config "DB_ROLE_PREFIX") -}}
{{- end -}}

{{/* TLS to PostgreSQL: verify-full against the operator's CA (CloudNativePG), or the values. */}}
{{- define "nexus.dbSslMode" -}}
{{- $mode := include "nexus.postgresqlMode" . -}}
{{- if eq $mode "cloudnative-pg" -}}verify-full
{{- else if eq $mode "statefulset" -}}disable
{{- else -}}{{ .Values.postgresql.external.sslMode }}
{{- end -}}
{{- end -}}
{{- define "nexus.dbCaSecret" -}}
{{- $mode := include "nexus.postgresqlMode" . -}}
{{- if eq $mode "cloudnative-pg" -}}{{ include "nexus.postgresqlName" . }}-ca
{{- else if eq $mode "external" -}}{{ .Values.postgresql.external.caSecret }}
{{- end -}}
{{- end -}}

{{/* The etcd client Secret of a user (root, streamer, collector, gateway). */}}
{{- define "nexus.etcdClientSecret" -}}
{{- $ctx := .ctx -}}
{{- $existing := get $ctx.Values.etcd.tls.existingSecrets .user -}}
{{- if $ctx.Values.etcd.tls.certManager.enabled -}}
{{- printf "%s-etcd-client-%s" (include "nexus.fullname" $ctx) .user -}}
{{- else -}}
{{- required (printf "etcd.tls.existingSecrets.%s is required when etcd.tls.certManager.enabled is false" .user) $existing -}}
{{- end -}}
{{- end -}}
{{- define "nexus.etcdServerSecret" -}}
{{- if .Values.etcd.tls.certManager.enabled -}}
{{- printf "%s-etcd-server" (include "nexus.fullname" .) -}}
{{- else -}}
{{- required "etcd.tls.existingSecrets.server is required when etcd.tls.certManager.enabled is false" .Values.etcd.tls.existingSecrets.server -}}
{{- end -}}
{{- end -}}
{{- define "nexus.etcdPeerSecret" -}}
{{- if .Values.etcd.tls.certManager.enabled -}}
{{- printf "%s-etcd-peer" (include "nexus.fullname" .) -}}
{{- else -}}
{{- required "etcd.tls.existingSecrets.peer is required when etcd.tls.certManager.enabled is false" .Values.etcd.tls.existingSecrets.peer -}}
{{- end -}}
{{- end -}}

{{/* ETCD_ENDPOINTS: the client Service. */}}
{{- define "nexus.etcdEndpoints" -}}
{{- printf "%s://%s:2379" (ternary "https" "http" .Values.etcd.tls.enabled) (include "nexus.etcdName" .) -}}
{{- end -}}

{{/*
A value of a config map as the text of an environment variable: lists joined with commas,
booleans and numbers as YAML would print them.
*/}}
{{- define "nexus.envValue" -}}
{{- if kindIs "slice" . -}}{{ join "," . }}{{- else if kindIs "float64" . -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/*
The environment of a Nexus container: the chart's own settings (etcd, PostgreSQL, ports, data
directory, secrets as *_FILE), then .Values.config, then the component's config map, later ones
winning. Call with (dict "ctx" $ "component" "collector" "config" .Values.collector.config
"etcdUser" "collector" "db" "collector|gateway|admin|none" "metricsPort" true).
*/}}
{{- define "nexus.env" -}}
{{- $ctx := .ctx -}}
{{- $env := dict "NEXUS_DATA_DIR" "/data" -}}
{{- if ne .etcdUser "none" -}}
{{- $_ := set $env "ETCD_ENDPOINTS" (include "nexus.etcdEndpoints" $ctx) -}}
{{- end -}}
{{- if and $ctx.Values.etcd.tls.enabled (ne .etcdUser "none") -}}
{{- $_ := set $env "ETCD_CA_FILE" "/var/run/secrets/nexus/etcd/ca.crt" -}}
{{- $_ := set $env "ETCD_CERT_FILE" "/var/run/secrets/nexus/etcd/tls.crt" -}}
{{- $_ := set $env "ETCD_KEY_FILE" "/var/run/secrets/nexus/etcd/tls.key" -}}
{{- end -}}
{{- if .metricsPort -}}
{{- $_ := set $env "METRICS_PORT" "9464" -}}
{{- end -}}
{{- if eq .component "streamer" -}}
{{/* The streamer waits at 80 % of etcd's quota: the chart's own etcd's. */}}
{{- $_ := set $env "ETCD_QUOTA_BYTES" (printf "%d" (int64 $ctx.Values.etcd.quotaBackendBytes)) -}}
{{- end -}}
{{- if ne .db "none" -}}
{{- $_ := set $env "DB_HOST" (include "nexus.dbHost" $ctx) -}}
{{- $_ := set $env "DB_PORT" (include "nexus.dbPort" $ctx) -}}
{{- $_ := set $env "DB_NAME" (include "nexus.dbName" $ctx) -}}
{{- $_ := set $env "DB_SSLMODE" (include "nexus.dbSslMode" $ctx) -}}
{{- $_ := set $env "DB_PASSWORD_FILE" "/var/run/secrets/nexus/db/password" -}}
{{- if include "nexus.dbCaSecret" $ctx -}}
{{- $_ := set $env "DB_SSLROOTCERT" "/var/run/secrets/nexus/db-ca/ca.crt" -}}
{{- end -}}
{{- if eq .db "admin" -}}
{{- $_ := set $env "DB_USER" (include "nexus.dbAdminUser" $ctx) -}}
{{- $_ := set $env "DB_OWNER_PASSWORD_FILE" "/var/run/secrets/nexus/db-roles/owner-password" -}}
{{- $_ := set $env "DB_COLLECTOR_PASSWORD_FILE" "/var/run/secrets/nexus/db-roles/collector-password" -}}
{{- $_ := set $env "DB_GATEWAY_PASSWORD_FILE" "/var/run/secrets/nexus/db-roles/gateway-password" -}}
{{- else -}}
{{- $_ := set $env "DB_USER" (printf "%s_%s" (include "nexus.rolePrefix" $ctx) .db) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .component "gateway") $ctx.Values.gateway.tls.existingSecret -}}
{{- $_ := set $env "TLS_CERT_FILE" "/var/run/secrets/nexus/tls/tls.crt" -}}
{{- $_ := set $env "TLS_KEY_FILE" "/var/run/secrets/nexus/tls/tls.key" -}}
{{- end -}}
{{- range $k, $v := $ctx.Values.config -}}
{{- $_ := set $env $k (include "nexus.envValue" $v) -}}
{{- end -}}
{{- range $k, $v := (.config | default dict) -}}
{{- $_ := set $env $k (include "nexus.envValue" $v) -}}
{{- end -}}
{{- range $k := keys $env | sortAlpha }}
- name: {{ $k }}
  value: {{ get $env $k | toString | quote }}
{{- end -}}
{{- end -}}

{{/*
The volumes of a Nexus pod: /data and /tmp as emptyDirs (the root filesystem is read-only), the
etcd client certificate of its user, and its PostgreSQL password (and CA). Same arguments as
nexus.env. nexus.volumeMounts mounts them.
*/}}
{{- define "nexus.volumes" -}}
{{- $ctx := .ctx -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if and $ctx.Values.etcd.tls.enabled (ne .etcdUser "none") }}
- name: etcd-client
  secret:
    secretName: {{ include "nexus.etcdClientSecret" (dict "ctx" $ctx "user" .etcdUser) }}
    defaultMode: 0440
{{- end }}
{{- if and (eq .component "gateway") $ctx.Values.gateway.tls.existingSecret }}
- name: gateway-tls
  secret:
    secretName: {{ $ctx.Values.gateway.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if ne .db "none" }}
{{- if eq .db "admin" }}
- name: db-password
  secret:
    secretName: {{ include "nexus.dbAdminSecret" $ctx }}
    defaultMode: 0440
    items:
      - key: password
        path: password
- name: db-roles
  secret:
    secretName: {{ include "nexus.dbRolesSecret" $ctx }}
    defaultMode: 0440
{{- else }}
- name: db-password
  secret:
    secretName: {{ include "nexus.dbRolesSecret" $ctx }}
    defaultMode: 0440
    items:
      - key: {{ .db }}-password
        path: password
{{- end }}
{{- if include "nexus.dbCaSecret" $ctx }}
- name: db-ca
  secret:
    secretName: {{ include "nexus.dbCaSecret" $ctx }}
    defaultMode: 0444
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{- define "nexus.volumeMounts" -}}
{{- $ctx := .ctx -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- if and $ctx.Values.etcd.tls.enabled (ne .etcdUser "none") }}
- name: etcd-client
  mountPath: /var/run/secrets/nexus/etcd
  readOnly: true
{{- end }}
{{- if and (eq .component "gateway") $ctx.Values.gateway.tls.existingSecret }}
- name: gateway-tls
  mountPath: /var/run/secrets/nexus/tls
  readOnly: true
{{- end }}
{{- if ne .db "none" }}
- name: db-password
  mountPath: /var/run/secrets/nexus/db
  readOnly: true
{{- if eq .db "admin" }}
- name: db-roles
  mountPath: /var/run/secrets/nexus/db-roles
  readOnly: true
{{- end }}
{{- if include "nexus.dbCaSecret" $ctx }}
- name: db-ca
  mountPath: /var/run/secrets/nexus/db-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* Probes on /healthz and /readyz of a named port; call with (dict "port" "http" "scheme" "HTTP"). */}}
{{- define "nexus.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
    scheme: {{ .scheme }}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
    scheme: {{ .scheme }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
    scheme: {{ .scheme }}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 2
{{- end -}}

{{/* Spread a component's pods over nodes (preferred) and zones. */}}
{{- define "nexus.spread" -}}
{{- $ctx := .ctx -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "nexus.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "nexus.selectorLabels" . | nindent 8 }}
{{- end -}}
