{{/*
Pod template of a Ray node. Call with (dict "root" $ "role" "head"|"worker" "group" <values> "name" <group name>).
The Ray container comes first (KubeRay adds `ray start` and probes to container 0).
*/}}
{{- define "easyr1.rayPodTemplate" -}}
{{- $root := .root -}}
{{- $group := .group -}}
{{- $isHead := eq .role "head" -}}
{{- $fullname := include "easyr1.fullname" $root -}}
{{- $judge := $root.Values.secrets.judge -}}
{{- $wandb := $root.Values.secrets.wandb -}}
metadata:
  labels:
    {{- include "easyr1.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ ternary "ray-head" (printf "ray-worker-%s" .name) $isHead }}
    app.kubernetes.io/part-of: easyr1
    {{- with $root.Values.commonLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $group.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $group.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if $root.Values.serviceAccount.name }}
  serviceAccountName: {{ $root.Values.serviceAccount.name }}
  {{- end }}
  {{- if not (and $isHead $root.Values.autoscaling.enabled) }}
  automountServiceAccountToken: false
  {{- end }}
  enableServiceLinks: false
  {{- /* the trainer's stop grace (finish the step, checkpoint) plus a margin for Ray's shutdown */}}
  {{- $stopGrace := (((($root.Values.trainingConfig).trainer) | default dict).stop_grace_s) | default 600 }}
  terminationGracePeriodSeconds: {{ add (int $stopGrace) ($root.Values.terminationGraceMarginSeconds | default 60) }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  {{- with $group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" $isHead }}
      image: {{ include "easyr1.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      {{- $resources := deepCopy (default (dict) $group.resources) }}
      {{- $gpus := default 0 $group.gpus | int }}
      {{- if gt $gpus 0 }}
      {{- $requests := default (dict) (get $resources "requests") }}
      {{- $limits := default (dict) (get $resources "limits") }}
      {{- $_ := set $requests $root.Values.gpuResourceName $gpus }}
      {{- $_ := set $limits $root.Values.gpuResourceName $gpus }}
      {{- $_ := set $resources "requests" $requests }}
      {{- $_ := set $resources "limits" $limits }}
      {{- end }}
      resources:
        {{- toYaml $resources | nindent 8 }}
      ports:
        {{- if $isHead }}
        - {name: gcs-server, containerPort: 6379, protocol: TCP}
        - {name: dashboard, containerPort: 8265, protocol: TCP}
        - {name: client, containerPort: 10001, protocol: TCP}
        - {name: metrics, containerPort: 8080, protocol: TCP}
        - {name: driver-metrics, containerPort: {{ include "easyr1.driverMetricsPort" $root }}, protocol: TCP}
        {{- else }}
        - {name: metrics, containerPort: 8080, protocol: TCP}
        {{- end }}
      env:
        {{- with $root.Values.commonEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- if and $isHead $judge.name (eq $judge.mount "env") }}
        - name: {{ dig "judge" "api_key_env" "OPENAI_API_KEY" (default (dict) $root.Values.trainingConfig) }}
          valueFrom:
            secretKeyRef: {name: {{ $judge.name }}, key: {{ $judge.key }}, optional: {{ $judge.optional }}}
        {{- end }}
        {{- if and $isHead $wandb.name }}
        - name: WANDB_API_KEY
          valueFrom:
            secretKeyRef: {name: {{ $wandb.name }}, key: {{ $wandb.key }}, optional: {{ $wandb.optional }}}
        {{- end }}
        {{- with $group.containerEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $group.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      lifecycle:
        preStop:
          exec:
            command: ["/bin/sh", "-c", "ray stop"]
      volumeMounts:
        - {name: dshm, mountPath: /dev/shm}
        {{- range $name := list "models" "data" "checkpoints" }}
        {{- $spec := index $root.Values.storage $name }}
        {{- if $spec.enabled }}
        - {name: {{ $name }}, mountPath: {{ $spec.mountPath }}, readOnly: {{ $spec.readOnly }}}
        {{- end }}
        {{- end }}
        {{- if $isHead }}
        - {name: training-config, mountPath: {{ $root.Values.configMountPath }}, readOnly: true}
        {{- if and $judge.name (eq $judge.mount "file") }}
        - {name: judge-key, mountPath: {{ include "easyr1.judgeKeyDir" $root }}, readOnly: true}
        {{- end }}
        {{- end }}
        {{- with $group.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $group.sharedMemory }}
    {{- range $name := list "models" "data" "checkpoints" }}
    {{- $spec := index $root.Values.storage $name }}
    {{- if $spec.enabled }}
    - name: {{ $name }}
      persistentVolumeClaim:
        claimName: {{ include "easyr1.claimName" (dict "root" $root "name" $name "spec" $spec) }}
        readOnly: {{ $spec.readOnly }}
    {{- end }}
    {{- end }}
    {{- if $isHead }}
    - name: training-config
      configMap:
        name: {{ include "easyr1.configMapName" $root }}
    {{- if and $judge.name (eq $judge.mount "file") }}
    - name: judge-key
      secret:
        secretName: {{ $judge.name }}
        optional: {{ $judge.optional }}
        defaultMode: 0440
        items:
          - {key: {{ $judge.key }}, path: {{ $judge.key }}}
    {{- end }}
    {{- end }}
    {{- with $group.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* rayStartParams as strings, KubeRay-style; extra entries (e.g. the pool resource) from .extra. */}}
{{- define "easyr1.rayStartParams" -}}
{{- $params := dict -}}
{{- range $key, $value := (default (dict) .params) -}}
{{- $_ := set $params $key (toString $value) -}}
{{- end -}}
{{- range $key, $value := (default (dict) .extra) -}}
{{- $_ := set $params $key $value -}}
{{- end -}}
{{- if $params -}}
{{- toYaml $params -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}
