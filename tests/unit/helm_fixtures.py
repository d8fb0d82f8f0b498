"""Helm release Secrets shaped as Helm v4 stores them, for the helm controller's unit tests."""

from __future__ import annotations

import base64
import json
from typing import Any

from tide.controllers.helm.go_encoding import GoStruct
from tide.controllers.helm.storage import StoredRelease, encode_release, release_from_secret

DEPLOYED_AT = "2026-11-30T10:00:00.123456789Z"


def helm_test_hook(name: str, phase: str | None = None) -> GoStruct:
    hook = GoStruct(
        name=name,
        kind="Pod",
        path=f"chart/templates/tests/{name}.yaml",
        manifest=f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n",
        events=["test"],
        last_run=GoStruct(),
    )
    if phase:
        hook["last_run"] = GoStruct(
            started_at="2026-11-30T10:01:00.5Z", completed_at="2026-11-30T10:01:02Z", phase=phase
        )
    else:
        hook["last_run"] = GoStruct(phase="")
    return hook


def release_json(
    name: str = "app",
    namespace: str = "apps",
    version: int = 1,
    status: str = "deployed",
    chart: str = "demo",
    chart_version: str = "1.0.0",
    config: dict[str, Any] | None = None,
    hooks: list[GoStruct] | None = None,
) -> GoStruct:
    info = GoStruct(first_deployed=DEPLOYED_AT, last_deployed=DEPLOYED_AT, description="Install complete")
    info["status"] = status
    metadata = GoStruct(name=chart, version=chart_version, description="A chart", apiVersion="v2")
    metadata["appVersion"] = "2.0"
    metadata["type"] = "application"
    release = GoStruct(name=name, info=info)
    release["chart"] = GoStruct(metadata=metadata, templates=[], values=GoStruct())
    if config:
        release["config"] = config
    release["manifest"] = "---\n# Source: demo/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n"
    if hooks:
        release["hooks"] = hooks
    release["version"] = version
    release["namespace"] = namespace
    release["apply_method"] = "ssa"
    return release


def release_secret(release: GoStruct, storage_namespace: str = "apps", resource_version: str = "1") -> dict:
    name, version = release["name"], release["version"]
    encoded = encode_release(release)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{version}",
            "namespace": storage_namespace,
            "resourceVersion": resource_version,
            "labels": {
                "name": name,
                "owner": "helm",
                "status": release["info"]["status"],
                "version": str(version),
            },
        },
        "data": {"release": base64.b64encode(encoded.encode()).decode()},
    }


def stored(**kw: Any) -> StoredRelease:
    return release_from_secret(release_secret(release_json(**kw)))


# A release Secret the real Helm (v4.2.3, through Tide's engine) wrote for e2e/test_helm_engine.py's
# chart, installed with values {greeting: "<hi & bye>", replicas: 2, ratio: 0.5, tags: [a, b]}
# and then tested (its test hook Job succeeded), recorded from the control plane.
RECORDED_RELEASE_SECRET: dict[str, Any] = json.loads(
    '{"kind":"Secret","apiVersion":"v1","metadata":{"name":"sh.helm.release.v1.demo.v1","namespace":"'
    'rec-store","labels":{"modifiedAt":"1796057291","name":"demo","owner":"helm","status":"deployed",'
    '"version":"1"}},"data":{"release":"SDRzSUFBQUFBQUFDLzV4V2IzT2l2aGIrS2t6dVc3U0FZZ3Z2MUYyUjF0cTd0Z'
    "1hodXJNVFFnUnEvakFrVUczSDczNG5XS3Y5elhaM2YrdjRRazlPem5uTzg1eWM1QlV3U0RGd1FZb3BCem9vMkpvRDl4V3NpM"
    "HJJSHlrdUNkL2hGTGpBTXF4Qnh6UTdQZVBCSExqOUs5YzB1NmJkTjY2dTdJRWRBeDBRK0M4M3BGaWdxaWhsd1Jsd2djK0VoS"
    "VJvaU5PU1lJbUJEb1NFc2hZdHRyZW9leDJnSEZaU0lhUll3aFJLcUg1L3JLSEJsVGdFTmJ0RzF3QTZnR1VSdkJzYnE3V1VKN"
    "HZWTlZSb3d0RUd1S3dtUkFjUzA1SkFpUVZ3Ly9jZS85MTRnVGhiRnhtRlpYY0hLVkhGdEVqQW1FNmVZUkFUeE9abFl2VUgva"
    "lRhanFrc0UvcHQ0SCtkTndtTnk5Z3djelFzWmJ4YzVMRTNNYUlIZnVPUFIzVVVtdVN1R0YzaTNiQitwSUdJdzhsTGZHL2ZLY"
    "nMvTloxWitMYi91ZHhFeTBWK2wvSE05OUpkSEFZR0RHMTIzQnZRaVVqRDRHVkdUMnYrOURsRHk2Qkp2Y2RzdlRSdWdBNG9UM"
    "lhSbHZVenBZeCt6M0d1cm94ZURQYjZUd2c0U0VJeGs3OWp3SnM4bytsdGt6NTl2WUVXcWVNdlBGdDR3WFBpT1hZU0JuWDZGM"
    "HlNMmZ3NURtOEg0MktZSWFwaWthZG9lVHZ3cC9MU0g5dGhGRzdOZUhsYm42MjFWZnZqMFVzY2JrblVXelRvU2VVYVpyNW41c"
    "WszNXcvZXBJakQ3WXZLR3kxSHo3L0t2LzdHTTMrNklNbHlKS0xsZ3JSS2pJZFpFZ1pHRkM3eTFQdmFZanZFMytZUkRRUjY0U"
    "m0ySnMvb0M4OXdUMlF6Y2swU0w4aVI5VmcvMEltTTcwZk9BZU13ODZlbitnNHg3Q2IyZ29jejdHMk0xSE51a09YVTV6VW4xT"
    "m5Fd1Z6RmZrbzlaOWZ5OVI1bjNpUnNrY1BRSm9pZHhSOGJXYUl3UFBCTTFYNnlEek1ZbW5sc1BRNzg2VFdKTGZLU1RxL3RHU"
    "1YxU2ljQ2h0K2FscXVucjMvU1VYM1R1QnowN0U4NlNtSWh4WVdnZklOLzIxTFhyV1N6M3ZuaEtwc28rNHREdFp6THhKSkVsU"
    "nlGZHAzMGxIeWtTVmpiVGp3T3QzTEc1bnhtNVUxaWlZR1NIZlVXSDFvd29wTW5hRGswM216TEpDVEdYVEZzS1V5OVFDSnZtN"
    "mZlNHh2Vm94ZmtCVS9IZHZISG8xMjhuQnZSOHRwNDlCd0J3N2w5VjR6dTRtVk0wTW5uS2JGc0l3cEpIUyt2WDA1N2g5TDM3R"
    "HdKbFRUZmJvNXkrZU5SbVlRVHBxUkVOR0J3T1RjUTI5UXd0SzBvM0pieDJESCtWQzdyMHVuM3JSanN2K3VnZ2FSV3cvQVZaQ"
    "lhHc21BWmNFR09DVkVEbC9FVTMyT0NrZVFWY0YvM09xaHdTUW9FQlhETnZRNEV5akdGeDlGNitIZktiaGlHMldtL0Q0Ymh0b"
    "DkxUGF3TG9oSWU5dngyV0ExNjl0WEFqTnNib3AzTi80QzZxZzJqaC9KQ1V6K3NnWmJzY0d0Uzkwd0ZaY0dCYTNUdGMrQ1dEa"
    "VRNMVB3SEVPZ2dBZC8zT3FDUUZXc3NKSEJCcDlOWnNmOW85N3l1RUhZMWRmZGNmSFpCck5qcEJuSzF4bHl4VGNGU1Z4dTNYc"
    "mV3WExIamRlYXVtS2FwdzNFSTJUa0VXckgzdFdOUnJyYjZ2S29WV0xFVit6WEVmNHp3anhoaFdZcUxFOUF2Nzc2ZklsMHhVV"
    "0xVR284a3VwcWwvb3EzMW1qWE5JMUNpZklaVERBUnJ2WUt5L0t3ZjY5V2oraU9ydWVwMUlmOGZKdW12ZWRXbi9OK2RMWFgvZ"
    "EdPT0pPd1lMZ1M3NjZkdHdwZ1dSNU5tbFpRbUdGWHEzQldDRm50dWdWcklDblNDNVhVVk1RQ0hlU2NiejQ4RGxxMTJ2RUZkS"
    "0JZQXk2NDVnblFRUWxsL3VadzhjdDVkOVpkNTFva2lyQXpNYTU1OG5tL3RBR1ZEVExHcGVwc3B2aktNYUZka1Y4bzJLNm1jd"
    "S9QQkVzZzJ2RDFlbGJRUXJxYThSTWxQdkJiWVNGaEpmL0xTWUYycmpiSERhNytnR1A1ZTRhbDRoZm9BRGVZeWZic0thamcrO"
    "XZ6c3FxWk90ZHRkcHorZ1BLVGdXQTdadC9wMlZaUERaTGppL0pUZjZzN3NLekx2dUU0VjhxL3pLRlFndDdYQ0dHY0hwNmRLV"
    "lloZnBTcTVLSjlGWUlFcjNtRk80clJEcXB3U3pYNDNnN0w0OHZTMU52dUVDVkVLbUtGVVVmQ0tzUHk4QUlsdXg4VXk1eXJWa"
    'EVDZ3YzL0F3QUEvLy9BSU9VMGpnc0FBQT09"},"type":"helm.sh/release.v1"}'
)
