{{/* Names and labels. */}}

{{- define "easyr1.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{/*
The RayCluster's name and the prefix of every object. Release "easyr1" gives "easyr1", the name that
k8s/rayjob.yaml's clusterSelector (ray.io/cluster, read by KubeRay as the RayCluster's name) points at.
KubeRay limits RayCluster names to 53 characters and DNS-1035 labels.
*/}}
{{- define "easyr1.fullname" -}}
{{- $name := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $name = .Values.fullnameOverride -}}
{{- else -}}
{{- $base := default .Chart.Name .Values.nameOverride -}}
{{- if contains $base .Release.Name -}}
{{- $name = .Release.Name -}}
{{- else -}}
{{- $name = printf "%s-%s" .Release.Name $base -}}
{{- end -}}
{{- end -}}
{{- $name = $name | trunc 53 | trimSuffix "-" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "the RayCluster name %q must be a DNS-1035 label (lower-case letters, digits and '-', starting with a letter); set fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "easyr1.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "easyr1.selectorLabels" -}}
app.kubernetes.io/name: {{ include "easyr1.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "easyr1.labels" -}}
helm.sh/chart: {{ include "easyr1.chart" . }}
{{ include "easyr1.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: easyr1
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "easyr1.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "easyr1.configMapName" -}}
{{- printf "%s-training-config" (include "easyr1.fullname" .) -}}
{{- end -}}

{{/* Where the judge key file is mounted (secrets.judge.mount = file). */}}
{{- define "easyr1.judgeKeyDir" -}}/var/run/secrets/easyr1/judge{{- end -}}

{{/* The claim name of a storage entry: (dict "root" $ "name" "models" "spec" $spec). */}}
{{- define "easyr1.claimName" -}}
{{- if .spec.existingClaim -}}
{{- .spec.existingClaim -}}
{{- else -}}
{{- printf "%s-%s" (include "easyr1.fullname" .root) .name -}}
{{- end -}}
{{- end -}}

{{/*
The training config as rendered into the ConfigMap: trainingConfig with judge.api_key_file pointing at the mounted
judge secret when secrets.judge.mount is "file". Returned as YAML.
*/}}
{{- define "easyr1.trainingConfig" -}}
{{- $cfg := deepCopy (default (dict) .Values.trainingConfig) -}}
{{- $rollout := dig "worker" "rollout" (dict) $cfg -}}
{{- range $node := list $rollout (default (dict) (get $rollout "val_override_config")) -}}
{{- if or (hasKey $node "false") (hasKey $node "true") -}}
{{- fail "trainingConfig.worker.rollout has a key read as a boolean: Helm reads values as YAML 1.1, where a bare `n:` means false; write \"n\": 4 (quoted)" -}}
{{- end -}}
{{- end -}}
{{- $judgeSecret := .Values.secrets.judge -}}
{{- if and $judgeSecret.name (eq $judgeSecret.mount "file") -}}
{{- $judge := default (dict) (get $cfg "judge") -}}
{{- $_ := set $judge "api_key_file" (printf "%s/%s" (include "easyr1.judgeKeyDir" .) $judgeSecret.key) -}}
{{- $_ := set $cfg "judge" $judge -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The driver's metrics port (telemetry.prometheus.port of the training config). */}}
{{- define "easyr1.driverMetricsPort" -}}
{{- $port := dig "telemetry" "prometheus" "port" 9400 (default (dict) .Values.trainingConfig) | int -}}
{{- $port -}}
{{- end -}}

{{/* A CPU quantity ("8", 8, "500m") as cores, rounded up like KubeRay's num-cpus. */}}
{{- define "easyr1.cpuCores" -}}
{{- $q := toString . -}}
{{- if hasSuffix "m" $q -}}
{{- ceil (divf (trimSuffix "m" $q | float64) 1000.0) -}}
{{- else -}}
{{- ceil ($q | float64) -}}
{{- end -}}
{{- end -}}
