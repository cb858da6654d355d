{{/*
Placement of one pool on its worker group, worked out from the training config and checked at render time, so a
layout that cannot run fails at `helm install` instead of leaving a job pending on idle GPUs.

The driver creates each pool's Ray actors with
  num_gpus = cluster.<pool>.num_gpus_per_worker, num_cpus = cluster.<pool>.num_cpus_per_worker,
  resources = {cluster.<pool>.resource: cluster.<pool>.resource_per_worker}
and N of them: worker.actor.num_workers, worker.rollout.num_engines, worker.image_edit.num_replicas.
A pod of the group holds floor(min(GPUs / num_gpus_per_worker, CPUs / num_cpus_per_worker)) workers and advertises
that many × resource_per_worker of the pool's resource (or workerGroups.<pool>.customResources[resource]).

Call: include "easyr1.placement" (dict "root" $ "pool" "actor") | fromJson
Returns {resource, amount, perPod, replicas, capacity, workers, gpus, idleGpus, resources}.
*/}}
{{- define "easyr1.placement" -}}
{{- $root := .root -}}
{{- $pool := .pool -}}
{{- $group := index $root.Values.workerGroups $pool -}}
{{- $cfg := default (dict) $root.Values.trainingConfig -}}
{{- $place := dig "cluster" $pool (dict) $cfg -}}
{{- $resource := get $place "resource" -}}
{{- if not (and (kindIs "string" $resource) $resource) -}}
{{- fail (printf "trainingConfig.cluster.%s.resource must name the Ray custom resource of the %s worker group (e.g. %q), so the pool lands on its own nodes" $pool $pool $pool) -}}
{{- end -}}
{{- $rpw := 1.0 -}}
{{- if hasKey $place "resource_per_worker" -}}{{- $rpw = get $place "resource_per_worker" | float64 -}}{{- end -}}
{{- $ngpw := 0.0 -}}
{{- if hasKey $place "num_gpus_per_worker" -}}{{- $ngpw = get $place "num_gpus_per_worker" | float64 -}}{{- end -}}
{{- $ncpw := 1.0 -}}
{{- if hasKey $place "num_cpus_per_worker" -}}{{- $ncpw = get $place "num_cpus_per_worker" | float64 -}}{{- end -}}
{{- $workers := 1 -}}
{{- if eq $pool "actor" -}}
{{- $workers = dig "worker" "actor" "num_workers" 1 $cfg | int -}}
{{- else if eq $pool "rollout" -}}
{{- $workers = dig "worker" "rollout" "num_engines" 1 $cfg | int -}}
{{- else -}}
{{- $workers = dig "worker" "image_edit" "num_replicas" 1 $cfg | int -}}
{{- end -}}
{{- $gpus := $group.gpus | float64 -}}
{{- $cpuQuantity := dig "limits" "cpu" (dig "requests" "cpu" "0" $group.resources) $group.resources -}}
{{- with get (default (dict) $group.rayStartParams) "num-cpus" -}}{{- $cpuQuantity = . -}}{{- end -}}
{{- $cpus := include "easyr1.cpuCores" $cpuQuantity | float64 -}}
{{- $unbounded := 1000000.0 -}}
{{- $byGpu := $unbounded -}}
{{- if gt $ngpw 0.0 -}}{{- $byGpu = floor (divf $gpus $ngpw) -}}{{- end -}}
{{- $byCpu := $unbounded -}}
{{- if gt $ncpw 0.0 -}}{{- $byCpu = floor (divf $cpus $ncpw) -}}{{- end -}}
{{- $perPod := minf $byGpu $byCpu -}}
{{- if eq $perPod $unbounded -}}{{- $perPod = float64 $workers -}}{{- end -}}
{{- $custom := default (dict) $group.customResources -}}
{{- $amount := mulf $perPod $rpw -}}
{{- if hasKey $custom $resource -}}
{{- $amount = get $custom $resource | float64 -}}
{{- if gt $rpw 0.0 -}}{{- $perPod = minf $perPod (floor (divf $amount $rpw)) -}}{{- end -}}
{{- end -}}
{{- if le $perPod 0.0 -}}
{{- fail (printf "workerGroups.%s: a %s worker needs %v GPUs and %v CPUs (trainingConfig.cluster.%s) but a pod of the group has %v GPUs and %v CPUs" $pool $pool $ngpw $ncpw $pool $gpus $cpus $pool) -}}
{{- end -}}
{{- $replicas := $group.replicas | int -}}
{{- if $root.Values.autoscaling.enabled -}}{{- $replicas = $group.maxReplicas | int -}}{{- end -}}
{{- $capacity := mulf $perPod (float64 $replicas) -}}
{{- if lt $capacity (float64 $workers) -}}
{{- fail (printf "workerGroups.%s holds %v %s workers (%d pods × %v per pod: %v GPUs, %v CPUs each) but the training config asks for %d; add pods or GPUs, or lower the pool size" $pool $capacity $pool $replicas $perPod $gpus $cpus $workers) -}}
{{- end -}}
{{- $usedGpus := mulf (float64 $workers) $ngpw -}}
{{- $idleGpus := subf (mulf $gpus (float64 $replicas)) $usedGpus -}}
{{- $resources := deepCopy $custom -}}
{{- $_ := set $resources $resource $amount -}}
{{- dict "resource" $resource "amount" $amount "perPod" $perPod "replicas" $replicas "capacity" $capacity "workers" $workers "gpus" $gpus "idleGpus" $idleGpus "resources" $resources | toJson -}}
{{- end -}}

{{/* All three placements, checked against each other: each pool needs a resource no other group advertises. */}}
{{- define "easyr1.placements" -}}
{{- $root := . -}}
{{- $all := dict -}}
{{- $owner := dict -}}
{{- range $pool := list "actor" "rollout" "editor" -}}
{{- $p := include "easyr1.placement" (dict "root" $root "pool" $pool) | fromJson -}}
{{- $_ := set $all $pool $p -}}
{{- end -}}
{{- range $pool := list "actor" "rollout" "editor" -}}
{{- range $name, $amount := (get $all $pool).resources -}}
{{- if hasKey $owner $name -}}
{{- fail (printf "the Ray resource %q is advertised by workerGroups.%s and workerGroups.%s; each pool needs a resource of its own (trainingConfig.cluster.<pool>.resource, workerGroups.<pool>.customResources)" $name (get $owner $name) $pool) -}}
{{- end -}}
{{- $_ := set $owner $name $pool -}}
{{- end -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}
