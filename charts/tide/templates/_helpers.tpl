{{/* Labels on every object: Flux's install label (part-of: flux) so Flux tooling recognises Tide. */}}
{{- define "tide.labels" -}}
app.kubernetes.io/part-of: flux
app.kubernetes.io/instance: {{ .Release.Namespace }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
tide.io/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one controller; `app` is the selector, as in Flux's manifests. */}}
{{- define "tide.controllerLabels" -}}
{{ include "tide.labels" .root }}
app.kubernetes.io/component: {{ .name }}
control-plane: controller
{{- end }}

{{- define "tide.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Flux's --events-addr: the notification controller's Service in this namespace. */}}
{{- define "tide.eventsAddr" -}}
http://notification-controller.$(RUNTIME_NAMESPACE).svc.cluster.local./
{{- end }}

{{/*
One controller's Deployment. Args: root (.), name, values (its values block), args (list of flags),
ports (list), volumes, volumeMounts.
*/}}
{{- define "tide.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "tide.controllerLabels" . | nindent 4 }}
  {{- with $root.Values.commonAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  replicas: {{ $v.replicas }}
  selector:
    matchLabels:
      app: {{ .name }}
  template:
    metadata:
      labels:
        app: {{ .name }}
        {{- include "tide.controllerLabels" . | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8080"
    spec:
      serviceAccountName: {{ .name }}
      terminationGracePeriodSeconds: 10
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: manager
          image: {{ include "tide.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["tide-{{ .name }}"]
          args:
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            - "--concurrent={{ $v.concurrent }}"
            - "--log-level={{ $root.Values.logLevel }}"
            - "--metrics-addr=:8080"
            - "--health-addr=:9440"
            - "--watch-all-namespaces={{ $root.Values.watchAllNamespaces }}"
            {{- if $root.Values.leaderElection }}
            - "--enable-leader-election"
            {{- end }}
            {{- $mt := $root.Values.multitenancy }}
            {{- if and $mt.enabled (has .name (list "kustomize-controller" "helm-controller" "notification-controller")) }}
            - "--no-cross-namespace-refs=true"
            {{- end }}
            {{- if and $mt.enabled $mt.defaultServiceAccount (has .name (list "kustomize-controller" "helm-controller")) }}
            - {{ printf "--default-service-account=%s" $mt.defaultServiceAccount | quote }}
            {{- end }}
            {{- range $v.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: RUNTIME_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
            - name: http-prom
              containerPort: 8080
              protocol: TCP
            - name: healthz
              containerPort: 9440
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /healthz
              port: healthz
          readinessProbe:
            httpGet:
              path: /readyz
              port: healthz
          resources:
            {{- toYaml ($v.resources | default $root.Values.resources) | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: temp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: temp
          emptyDir: {}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* ServiceAccount, leader-election Role/RoleBinding and ClusterRoleBinding of one controller. */}}
{{- define "tide.identity" -}}
{{- $root := .root -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "tide.controllerLabels" . | nindent 4 }}
---
# Leader election and its events, in the controller's own namespace only.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .name }}-leader-election
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "tide.controllerLabels" . | nindent 4 }}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .name }}-leader-election
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "tide.controllerLabels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ .name }}-leader-election
subjects:
  - kind: ServiceAccount
    name: {{ .name }}
    namespace: {{ $root.Release.Namespace }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .name }}-{{ $root.Release.Namespace }}
  labels:
    {{- include "tide.controllerLabels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ .name }}-{{ $root.Release.Namespace }}
subjects:
  - kind: ServiceAccount
    name: {{ .name }}
    namespace: {{ $root.Release.Namespace }}
{{- if .clusterAdmin }}
---
# Applies whatever kinds the repository holds, like Flux's cluster-reconciler binding.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ .name }}-cluster-reconciler-{{ $root.Release.Namespace }}
  labels:
    {{- include "tide.controllerLabels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: ServiceAccount
    name: {{ .name }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}

{{/* Rules every controller needs: its own kinds, their status and finalizers; Events. */}}
{{- define "tide.ownKindsRules" -}}
- apiGroups: [{{ .group | quote }}]
  resources: {{ .resources | toJson }}
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: [{{ .group | quote }}]
  resources: {{ .subresources | toJson }}
  verbs: ["get", "update", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
