"""Kubernetes access for Tide: client setup, the dynamic KubeClient, informers, kstatus."""

from tide.shared.kube.client import KubeClient
from tide.shared.kube.config import Connection, load_connection, pod_namespace
from tide.shared.kube.discovery import ResourceInfo
from tide.shared.kube.errors import KubeApiError, ResourceNotFoundError
from tide.shared.kube.informer import Informer
from tide.shared.kube.kstatus import Status, StatusKind, compute_status
from tide.shared.kube.secrets import secret_data

__all__ = [
    "Connection",
    "Informer",
    "KubeApiError",
    "KubeClient",
    "ResourceInfo",
    "ResourceNotFoundError",
    "Status",
    "StatusKind",
    "compute_status",
    "load_connection",
    "pod_namespace",
    "secret_data",
]
