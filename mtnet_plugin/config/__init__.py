"""mtnet_plugin.config: PySlowFast's config schema, YAML loading with clear errors, and validation.

- ``get_cfg()``: a new default config (PySlowFast keys and defaults + ``MTNET`` + ``SYNTHETIC``).
- ``load_config(cfg_files, opts)``: defaults, then each YAML file (``_BASE_`` supported), then ``--opts`` pairs.
- ``validate_cfg(cfg)``: rejects values that cannot work, naming the key (``ConfigError``).
- ``assert_and_infer_cfg(cfg)``: validates and returns a new frozen config with derived settings.
"""
from .defaults import add_data_config, get_cfg
from .loading import ConfigError, load_config, merge_file, merge_opts, unimplemented_settings, warn_unimplemented
from .mtnet import add_mtnet_config
from .synthetic import add_synthetic_config
from .validation import assert_and_infer_cfg, validate_cfg

__all__ = [
    "ConfigError",
    "add_data_config",
    "add_mtnet_config",
    "add_synthetic_config",
    "assert_and_infer_cfg",
    "get_cfg",
    "load_config",
    "merge_file",
    "merge_opts",
    "unimplemented_settings",
    "validate_cfg",
    "warn_unimplemented",
]
