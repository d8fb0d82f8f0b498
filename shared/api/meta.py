"""Building blocks shared by every Flux kind: base models, object metadata, conditions, artifacts.

Wire format is Flux's (camelCase); attributes are snake_case. Optional fields default to None
and are left out of dumps, so `from_dict(d).to_dict() == d` for any valid object. Flux's own
defaults live in the CRD (the API server fills them in) and in getters such as
`GitRepository.spec.timeout_seconds()`, like Flux's Go API (`GetTimeout()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, **_UNIT_SECONDS}

Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
"""A Go duration string as Flux accepts it: `30s`, `5m`, `1h30m`, `1.5h`, `500ms`."""

SHORT_DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"
ShortDuration = Annotated[str, StringConstraints(pattern=SHORT_DURATION_PATTERN)]
"""A duration without hours, as Flux's source timeouts and Provider timeouts accept."""

ConditionStatus = Literal["True", "False", "Unknown"]
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


def parse_duration(value: str, *, go: bool = False) -> float:
    """Seconds in a duration as Flux's API accepts it (`30s`, `1h30m`, `1.5h`; units ms, s, m, h);
    ValueError otherwise. go=True also takes what Go's time.ParseDuration does (`0`, `us`, `ns`,
    surrounding blanks), as command-line flags and Provider timeouts do."""
    if not go:
        if not re.fullmatch(DURATION_PATTERN, value):
            raise ValueError(f"invalid duration {value!r}: expected e.g. 30s, 5m, 1h30m (units ms, s, m, h)")
        return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))
    text = value.strip()
    if text == "0":
        return 0.0
    parts = _GO_DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"invalid duration {value!r}: use Go durations like 30s, 1m, 1h30m")
    return sum(float(number) * _GO_UNIT_SECONDS[unit] for number, unit in parts)


def format_duration(seconds: float, *, go: bool = False) -> str:
    """The text for a number of seconds, the inverse of parse_duration: `90` -> `1m30s`, `3600` -> `1h`,
    `0.5` -> `500ms`. go=True writes Go's time.Duration.String() (`1m0s`, `2h0m0s`), as Flux prints
    the durations it writes into objects."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs + (seconds - whole):g}s"
    if go:
        if hours:
            return f"{hours}h{minutes}m{secs_text}"
        return f"{minutes}m{secs_text}" if minutes else secs_text
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if secs or seconds != whole or not out:
        out += secs_text
    return out


def crd_default(value: Any, **field_kwargs: Any) -> Any:
    """An optional field whose Flux CRD declares `default: value` (the model keeps None)."""
    extra = dict(field_kwargs.pop("json_schema_extra", None) or {})
    extra["default"] = value
    return Field(default=None, json_schema_extra=extra, **field_kwargs)


class FluxModel(BaseModel):
    """Base of every nested API struct: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="ignore",
        use_attribute_docstrings=True,
        # Validators are built on a model's first use: each controller uses a few of the API's
        # kinds (measured: 4 MiB less at import, 2 MiB less once the helm controller's are used).
        defer_build=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with Flux's field names, unset fields left out."""
        dumped: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped


class ObjectMeta(BaseModel):
    """The parts of Kubernetes ObjectMeta the controllers use; anything else is kept as-is."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="allow",
        defer_build=True,
    )

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None


class CelRule(FluxModel):
    """A CEL validation rule of the CRD (x-kubernetes-validations)."""

    rule: str
    message: str


def cel_rules(*rules: tuple[str, str]) -> ConfigDict:
    """Model config adding CEL rules to the model's CRD schema (checked by the API server)."""
    validations: list[JsonValue] = [{"rule": rule, "message": message} for rule, message in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": validations})


class NamespaceSelector(FluxModel):
    match_labels: dict[str, str] | None = None


class AccessFrom(FluxModel):
    """Access Control List for cross-namespace references (not implemented by Flux either)."""

    namespace_selectors: list[NamespaceSelector]


class LocalObjectReference(FluxModel):
    """A reference to an object in the same namespace."""

    name: str


class SecretKeyReference(FluxModel):
    """A key of a Secret in the same namespace."""

    name: str
    key: str | None = None


class NamespacedObjectReference(FluxModel):
    """A reference to an object, in the same namespace unless namespace is set."""

    name: str
    namespace: str | None = None


class DependencyReference(FluxModel):
    """A Flux object this one depends on (dependsOn)."""

    name: str
    namespace: str | None = None
    ready_expr: str | None = None
    """CEL expression replacing the built-in readiness check of the dependency."""


class NamespacedObjectKindReference(FluxModel):
    """A reference to an object of any kind (health checks)."""

    api_version: str | None = None
    kind: str
    name: str
    namespace: str | None = None


class KubeConfigReference(FluxModel):
    """Where to find the kubeconfig of a remote cluster."""

    secret_ref: SecretKeyReference | None = None
    config_map_ref: LocalObjectReference | None = None


class Selector(FluxModel):
    """Kustomize-style object selector (patch targets, ignore rules)."""

    group: str | None = None
    version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    annotation_selector: str | None = None
    label_selector: str | None = None


class Patch(FluxModel):
    """A strategic merge or JSON6902 patch, with an optional target."""

    patch: str
    target: Selector | None = None


class Image(FluxModel):
    """An image override: a new name, tag or digest for a container image."""

    name: str
    new_name: str | None = None
    new_tag: str | None = None
    digest: str | None = None


class CommonMetadata(FluxModel):
    """Labels and annotations added to every applied object."""

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class CustomHealthCheck(FluxModel):
    """CEL expressions computing the health of a kind."""

    api_version: str
    kind: str
    current: str
    in_progress: str | None = None
    failed: str | None = None


class Condition(FluxModel):
    """A Kubernetes condition (metav1.Condition)."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0, json_schema_extra={"format": "int64"})
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    """CamelCase, e.g. ReconciliationSucceeded; the API server refuses spaces."""
    message: str = Field(max_length=32768)


class Artifact(FluxModel):
    """The output of a source reconcile: a file served over HTTP, with its revision and digest."""

    path: str
    url: str
    revision: str
    digest: str | None = Field(default=None, pattern=r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
    last_update_time: str = Field(json_schema_extra={"format": "date-time"})
    size: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    metadata: dict[str, str] | None = None


class ResourceRef(FluxModel):
    """One entry of an inventory: `<namespace>_<name>_<group>_<kind>` and the version."""

    id: str
    v: str


class ResourceInventory(FluxModel):
    """The objects applied by a reconciler."""

    entries: list[ResourceRef] = Field(default_factory=list)


class ObjectStatus(FluxModel):
    """Status fields every reconciled Flux kind has."""

    observed_generation: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    conditions: list[Condition] = Field(default_factory=list)
    last_handled_reconcile_at: str | None = None

    @model_serializer(mode="wrap")
    def _omit_empty_conditions(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("conditions") == []:
            del data["conditions"]
        return data

    def get_condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def is_ready(self) -> bool:
        ready = self.get_condition("Ready")
        return ready is not None and ready.status == "True"


class Spec(FluxModel):
    """Base of every kind's spec."""


@dataclass(frozen=True)
class PrinterColumn:
    """A `kubectl get` column of a CRD."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str | None = None


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
READY = PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status')
STATUS = PrinterColumn("Status", '.status.conditions[?(@.type=="Ready")].message')


class KubeObject(FluxModel):
    """A namespaced Flux object: apiVersion/kind come from the class, metadata, spec and status."""

    group: ClassVar[str]
    version: ClassVar[str]
    """The storage version; the one controllers watch and write."""
    served_versions: ClassVar[tuple[str, ...]] = ()
    """Extra versions the CRD serves with the same schema (deprecated betas)."""
    kind: ClassVar[str]
    plural: ClassVar[str]
    singular: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]] = ()
    categories: ClassVar[tuple[str, ...]] = ("all", "fluxcd")
    crd_annotations: ClassVar[dict[str, str]] = {}
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (AGE, READY, STATUS)
    has_status: ClassVar[bool] = True
    """False for static kinds (Alert, Provider v1beta3) that no controller reconciles."""
    default_interval: ClassVar[str | None] = None
    """Flux's interval when spec.interval is optional and unset (HelmRepository, Receiver)."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: Spec

    _api_version: str | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _check_type_meta(cls, data: Any, handler: ModelWrapValidatorHandler[KubeObject]) -> KubeObject:
        api_version = None
        if isinstance(data, dict):
            data = dict(data)
            api_version = data.pop("apiVersion", None)
            kind = data.pop("kind", None)
            if kind is not None and kind != cls.kind:
                raise ValueError(f"kind {kind!r} is not {cls.kind}")
            if api_version is not None and api_version not in cls.api_versions():
                versions = ", ".join(cls.api_versions())
                raise ValueError(f"apiVersion {api_version!r} is not one of {versions}")
        obj = handler(data)
        if api_version is not None:
            obj._api_version = api_version
        return obj

    @model_serializer(mode="wrap")
    def _add_type_meta(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        if data.get("status") == {}:
            del data["status"]
        return {"apiVersion": self.api_version, "kind": self.kind, **data}

    @classmethod
    def api_versions(cls) -> tuple[str, ...]:
        return tuple(f"{cls.group}/{v}" for v in (cls.version, *cls.served_versions))

    @classmethod
    def storage_api_version(cls) -> str:
        return f"{cls.group}/{cls.version}"

    @property
    def api_version(self) -> str:
        """The apiVersion the object was read with (storage version for new objects)."""
        return self._api_version or self.storage_api_version()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Parse an object dict (from the API server or YAML); pydantic.ValidationError if invalid."""
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        return self.to_wire()

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or ""

    @classmethod
    def spec_fields(cls) -> set[str]:
        spec_type = cls.model_fields["spec"].annotation
        assert isinstance(spec_type, type) and issubclass(spec_type, BaseModel)
        return set(spec_type.model_fields)

    @classmethod
    def status_model(cls) -> type[ObjectStatus] | None:
        field = cls.model_fields.get("status")
        if field is None:
            return None
        assert isinstance(field.annotation, type) and issubclass(field.annotation, ObjectStatus)
        return field.annotation

    @classmethod
    def has_interval(cls) -> bool:
        return "interval" in cls.spec_fields()

    @classmethod
    def has_retry_interval(cls) -> bool:
        return "retry_interval" in cls.spec_fields()

    @classmethod
    def has_suspend(cls) -> bool:
        return "suspend" in cls.spec_fields()

    def is_suspended(self) -> bool:
        return bool(getattr(self.spec, "suspend", None))

    def interval_seconds(self) -> float | None:
        """Seconds between reconciles, None for kinds without spec.interval."""
        interval = getattr(self.spec, "interval", None) or self.default_interval
        return parse_duration(interval) if interval else None

    def retry_interval_seconds(self) -> float | None:
        """Seconds before retrying a failed reconcile, None where the kind has no retryInterval."""
        if not self.has_retry_interval():
            return None
        retry = getattr(self.spec, "retry_interval", None)
        return parse_duration(retry) if retry else self.interval_seconds()
