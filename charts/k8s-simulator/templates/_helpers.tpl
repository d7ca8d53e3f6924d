{{- define "k8sim.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "k8sim.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels of one component: include with (dict "ctx" $ "component" "api"). */}}
{{- define "k8sim.componentLabels" -}}
{{ include "k8sim.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "k8sim.selector" -}}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A component's ServiceAccount name. */}}
{{- define "k8sim.sa" -}}
{{ include "k8sim.fullname" .ctx }}-{{ .component }}
{{- end -}}

{{- define "k8sim.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "k8sim.dbSecret" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecret }}{{- else -}}{{ include "k8sim.fullname" . }}-db{{- end -}}
{{- end -}}

{{- define "k8sim.redisUrl" -}}
{{- if .Values.redis.bundled.enabled -}}redis://{{ include "k8sim.fullname" . }}-redis:6379/0{{- else -}}{{ .Values.redis.url }}{{- end -}}
{{- end -}}

{{- define "k8sim.tokenSecret" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecret }}{{- else -}}{{ include "k8sim.fullname" . }}-api-token{{- end -}}
{{- end -}}

{{/* Pod-level security and the shared pieces of every pod of the simulator's image. */}}
{{- define "k8sim.podSecurity" -}}
securityContext: {{- toYaml .Values.securityContext.pod | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{ include "k8sim.realNodes" . }}
{{- end -}}

{{/* Never on a fake node: the static pools' and Karpenter's (all labelled type=kwok) have no
     kubelet, so KWOK would report the pod Running while nothing runs it. */}}
{{- define "k8sim.realNodes" -}}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: type, operator: NotIn, values: [kwok]}]
{{- end -}}

{{- define "k8sim.containerSecurity" -}}
securityContext: {{- toYaml .Values.securityContext.container | nindent 2 }}
{{- end -}}

{{/* Environment shared by every component: where the store and Redis are. The database URL
     always comes from a Secret (the bundled one's, an existing one, or one made from `url`). */}}
{{- define "k8sim.env" -}}
- name: K8SIM_KUBECONFIG
  value: /nonexistent  # in-cluster service account
- name: K8SIM_STATE_DIR
  value: /tmp/k8sim
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: K8SIM_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: K8SIM_PROFILE
  value: {{ .Values.profile | quote }}
- name: K8SIM_REDIS_URL
  value: {{ include "k8sim.redisUrl" . | quote }}
- name: K8SIM_SLA_TARGET
  value: {{ .Values.engine.slaTarget | quote }}
- name: K8SIM_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ include "k8sim.dbSecret" . }}, key: DATABASE_URL}
{{- end -}}

{{/* Writable scratch space under a read-only root filesystem. */}}
{{- define "k8sim.tmpVolume" -}}
- name: tmp
  emptyDir: {sizeLimit: 256Mi}
{{- end -}}
