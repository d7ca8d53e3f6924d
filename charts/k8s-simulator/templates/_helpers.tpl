{{- define "k8sim.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "k8sim.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "k8sim.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "k8sim.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* Environment shared by every component: where the store and Redis are. */}}
{{- define "k8sim.env" -}}
- name: K8SIM_KUBECONFIG
  value: /nonexistent  # in-cluster service account
- name: K8SIM_STATE_DIR
  value: /tmp/k8sim
- name: K8SIM_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: K8SIM_REDIS_URL
  value: {{ .Values.redis.url | quote }}
- name: K8SIM_SLA_TARGET
  value: {{ .Values.engine.slaTarget | quote }}
{{- if .Values.database.existingSecret }}
- name: K8SIM_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.database.existingSecret }}, key: DATABASE_URL}
{{- else }}
- name: K8SIM_DATABASE_URL
  value: {{ .Values.database.url | quote }}
{{- end }}
{{- end -}}
