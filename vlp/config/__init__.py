"""Typed configuration: dataclasses are the single source of truth.

A config is built from a YAML preset (by name from ``vlp/configs`` or by path), which may name a
``base:`` preset it extends, and then from dotted ``key=value`` overrides given on the command line.
An unknown key, a key given twice in one YAML mapping, a value of the wrong type or out of its range is
an error that names the key and says what was expected; all of it is checked when the config is loaded,
before any data is read. ``data.image_size`` follows ``model.vision.image_size`` (its one source).

Modules: :mod:`~vlp.config.schema` (the dataclasses: the configuration reference), :mod:`~vlp.config.checks`
(range checks, :class:`ConfigError`), :mod:`~vlp.config.loading` (presets, overrides, saved dicts). The names
below are the package's public interface.
"""

from vlp.config.checks import ConfigError, validate
from vlp.config.loading import (
    PRESET_DIR,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    preset_names,
)
from vlp.config.schema import (
    DATA_FORMATS,
    FUSION_MODES,
    LR_COMPONENTS,
    PRECISIONS,
    Config,
    DataConfig,
    ITCConfig,
    ITMConfig,
    ModelConfig,
    ModeScheduleConfig,
    MVMConfig,
    ObjectivesConfig,
    SoftLabelConfig,
    SynthesizedNegativeConfig,
    TaskConfig,
    TextEncoderConfig,
    TrainConfig,
    VisionEncoderConfig,
)

__all__ = [
    "DATA_FORMATS",
    "FUSION_MODES",
    "LR_COMPONENTS",
    "PRECISIONS",
    "PRESET_DIR",
    "Config",
    "ConfigError",
    "DataConfig",
    "ITCConfig",
    "ITMConfig",
    "MVMConfig",
    "ModeScheduleConfig",
    "ModelConfig",
    "ObjectivesConfig",
    "SoftLabelConfig",
    "SynthesizedNegativeConfig",
    "TaskConfig",
    "TextEncoderConfig",
    "TrainConfig",
    "VisionEncoderConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_override",
    "preset_names",
    "validate",
]
