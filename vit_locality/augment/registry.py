"""The training protocol as a registry of components, each defined whole in one module.

A component (`Component`) is everything about one switch of the protocol: its config fields with
their defaults (off), their checks, where it acts, its forms there, and its row in the condition
table. Every consumer finds components here by name and none names one: the configs' fields
(`add_fields`), validation (`check_all`), the tf.data input (`tf_image_ops`), the input on the
device (`device_image_ops`), the train step (`step_ops`), the condition names of the report and
the ablation (`vit_locality.augment.protocol`).

Where a component acts (`stage`):

    image   per image, before the batch: uint8 [H, W, C] -> uint8 [H, W, C], in tf.data
            (`tf_form`, TensorFlow imported inside it) and on the device (`device_form`, JAX).
            Applied in the order of `stream`, which is also its random stream: in tf.data
            `stateless_split(seed, n)[stream]`, on the device `fold_in(key, stream)`.
    step    on the device, in the jitted train step, on the normalized float [B, H, W, C]
            images and the float [B, K] targets (`step_form`), in the order of `order`, with
            the key `fold_in(step_key, stream)`. Forms shared by two components (CutMix and
            Mixup are one op, timm's Mixup) run once.

The built-in components live in `BUILTIN`'s modules and register themselves when first needed;
`register` adds one from anywhere (tests/test_protocol_registry.py defines one in a test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from vit_locality.config_fields import get_field

BUILTIN = (
    "vit_locality.augment.crop_flip",
    "vit_locality.augment.autoaugment",
    "vit_locality.augment.color_jitter",
    "vit_locality.augment.rand_augment",
    "vit_locality.augment.erasing",
    "vit_locality.augment.mixing",
    "vit_locality.augment.resizemix",
    "vit_locality.augment.label_smoothing",
)

Stage = Literal["image", "step"]
# (uint8 image [H, W, C], seed [2] int64 tf.Tensor) -> uint8 image; TensorFlow.
TfImageOp = Callable[[Any, Any], Any]
# (key, uint8 image [H, W, C]) -> uint8 image; JAX.
DeviceImageOp = Callable[[Any, Any], Any]
# (key, images float [B, H, W, C], targets float [B, K]) -> (images, targets, info dict).
StepOp = Callable[[Any, Any, Any], tuple[Any, Any, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class CheckContext:
    """What a component's check may need beyond the config: the dataset's facts
    (`vit_locality.datasets.DatasetInfo`) and the devices of every process."""

    info: Any
    num_devices: int


@dataclasses.dataclass(frozen=True)
class Component:
    """One component of the protocol.

    Attributes:
      name: its name, the CIFAR-100 ablation config's argument ("cutmix").
      stage: where it acts: "image" or "step" (module docstring).
      fields: config field -> default, the value that leaves it off (set by `add_fields`).
      on_fields: the fields that must all be > 0 (or True) for it to be on.
      stream: its random stream (and, for "image", its place in the order).
      order: "step" components run in this order (erasing 10, label smoothing 20, mixing 30).
      key: its short name in condition names ("cm"); None for what every protocol has (crop
        and flip), which no condition names.
      row: its place in the condition table, which orders the keys of a condition name
        ("aa+cm+ls") and the report's columns.
      title: its column title in the report's tables.
      switch: config field -> the value that switching it on sets (the ablation, Modern).
      settings: short name -> config field, shown in a condition name where the value differs
        from `switch`'s ("cm(a=0.5)").
      check: `(config, CheckContext) -> None`, raises a one-line ConfigError.
      tf_form, device_form: `config -> op` ("image" components).
      step_form: `(config, num_shards) -> op` ("step" components).
    """

    name: str
    stage: Stage
    fields: dict[str, Any]
    on_fields: tuple[str, ...]
    stream: int
    order: int = 0
    key: str | None = None
    row: int = 100
    title: str = ""
    switch: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, str] = dataclasses.field(default_factory=dict)
    check: Callable[[Any, CheckContext], None] | None = None
    tf_form: Callable[[Any], TfImageOp] | None = None
    device_form: Callable[[Any], DeviceImageOp] | None = None
    step_form: Callable[[Any, int], StepOp] | None = None

    def is_on(self, config: Mapping[str, Any]) -> bool:
        """Whether `config` (a ConfigDict or config.json's dict) has it on."""
        return all(get_field(config, field, 0) > 0 for field in self.on_fields)

    def settings_of(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {short: get_field(config, field, None) for short, field in self.settings.items()}

    def usual_settings(self) -> dict[str, Any]:
        return {short: self.switch[field] for short, field in self.settings.items()}


_REGISTRY: dict[str, Component] = {}
_loaded = False


def register(component: Component) -> Component:
    """Adds `component`; ValueError when its name, key or stream is taken (two "step"
    components may share a stream only when they share their form)."""

    def clashes(other: Component) -> bool:
        same_stream = other.stage == component.stage and other.stream == component.stream
        shared_op = component.step_form is not None and other.step_form is component.step_form
        same_key = component.key is not None and other.key == component.key
        return other.name == component.name or same_key or (same_stream and not shared_op)

    taken = [other.name for other in _REGISTRY.values() if clashes(other)]
    if taken:
        raise ValueError(
            f"component {component.name!r} clashes with {taken[0]!r} (name, key or stream)"
        )
    _REGISTRY[component.name] = component
    return component


@contextlib.contextmanager
def registered(component: Component) -> Iterator[Component]:
    """`register(component)` for the block only."""
    _load_builtin()
    register(component)
    try:
        yield component
    finally:
        del _REGISTRY[component.name]


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            importlib.import_module(module)


def components() -> list[Component]:
    """Every registered component: "image" ones by stream, then "step" ones by order."""
    _load_builtin()
    return sorted(
        _REGISTRY.values(),
        key=lambda c: (c.stage != "image", c.stream if c.stage == "image" else c.order),
    )


def by_key() -> dict[str, Component]:
    """The components that conditions name, by key, in the condition table's order (`row`)."""
    named = sorted((c for c in components() if c.key is not None), key=lambda c: c.row)
    return {c.key: c for c in named}


def by_name(name: str) -> Component:
    _load_builtin()
    return _REGISTRY[name]


def add_fields(config: Any) -> None:
    """Sets every component's fields on the ConfigDict `config` to their defaults."""
    import ml_collections

    for component in components():
        for field, default in component.fields.items():
            *groups, leaf = field.split(".")
            target = config
            for group in groups:
                if group not in target:
                    target[group] = ml_collections.ConfigDict()
                target = target[group]
            target[leaf] = default


def set_fields(config: Any, values: Mapping[str, Any]) -> None:
    """Sets the dotted `values` on the ConfigDict `config`."""
    for field, value in values.items():
        *groups, leaf = field.split(".")
        target = config
        for group in groups:
            target = target[group]
        target[leaf] = value


def check_all(config: Any, context: CheckContext) -> None:
    """Every component's checks, and that each "image" component on has the form its input
    needs; the first bad field raises a one-line ConfigError."""
    from vit_locality.errors import ConfigError

    for component in components():
        if component.check is not None:
            component.check(config, context)
    form = "device_form" if config.data.on_device else "tf_form"
    for component in _on(config, "image"):
        if getattr(component, form) is None:
            where = "on the device" if config.data.on_device else "in tf.data"
            other = "False" if config.data.on_device else "True"
            raise ConfigError(
                f"config.data.on_device={config.data.on_device} is not allowed with "
                f"{component.name}: it has no form {where}; use {other}"
            )


def _on(config: Any, stage: Stage) -> list[Component]:
    return [c for c in components() if c.stage == stage and c.is_on(config)]


def image_streams() -> int:
    """How many random streams the "image" components draw from."""
    return 1 + max(c.stream for c in components() if c.stage == "image")


def tf_image_ops(config: Any) -> list[tuple[int, TfImageOp]]:
    """(stream, op) of every "image" component `config` has on, in order; each op's
    TensorFlow is imported here."""
    return [(c.stream, c.tf_form(config)) for c in _on(config, "image")]


def device_image_ops(config: Any) -> list[tuple[int, DeviceImageOp]]:
    """(stream, op) of every "image" component `config` has on, in order, for the device."""
    return [(c.stream, c.device_form(config)) for c in _on(config, "image")]


def step_ops(config: Any, num_shards: int) -> list[tuple[int, StepOp]]:
    """(stream, op) of every "step" component `config` has on, in order; a form that two
    components share (CutMix and Mixup) once."""
    forms = dict.fromkeys((c.step_form, c.stream) for c in _on(config, "step"))
    return [(stream, form(config, num_shards)) for form, stream in forms]
