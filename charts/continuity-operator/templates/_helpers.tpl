{{- define "continuity-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "continuity-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "continuity-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "continuity-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "continuity-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "continuity-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The operator's image (also the hand-back agent's): by digest when one is given. */}}
{{- define "continuity-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "continuity-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "continuity-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "continuity-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "continuity-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* What the operator does to the resources it reconciles and the children it owns. */}}
{{- define "continuity-operator.reconcileRules" -}}
- apiGroups: [continuity.mailops.io]
  resources: [continuitydomains, continuityusers]
  verbs: [get, list, watch]
- apiGroups: [continuity.mailops.io]
  resources: [continuitydomains/status, continuityusers/status]
  verbs: [patch]
# The hand-back finalizer (only while the standby holds mail for the primary).
- apiGroups: [continuity.mailops.io]
  resources: [continuitydomains]
  verbs: [patch]
# The hand-back agents' tracking endpoint, through the API server's service proxy.
- apiGroups: [""]
  resources: [services/proxy]
  verbs: [get]
# Setting blockOwnerDeletion on children needs update on the owner's finalizers where the
# OwnerReferencesPermissionEnforcement admission plugin is on.
- apiGroups: [continuity.mailops.io]
  resources: [continuitydomains/finalizers]
  verbs: [update]
# The standby's children. They go with their ContinuityDomain through garbage collection
# (ownerReferences); the operator deletes only what a domain stops asking for: the webmail
# Ingress, and the Service and Endpoints fronting a primary given by address.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services, endpoints]
  verbs: [get, list, watch, create, patch, delete]
# Secrets: the metadata of all of them is watched and the emergency passwords a domain
# references are read (get); the operator writes only its own (the password hashes).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [statefulsets, deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}
