"""The configuration layer: find, load and validate ``compat.toml`` / ``[tool.compat]``.

The plugin and the CLI use only these names::

    path = find_config(rootdir, explicit)         # where the config is (ConfigError when nowhere)
    config = load_config(path)                    # parsed and validated: compat.config.model.Config
    config = apply_overrides(config, candidates={"orders": "v3"}, runtime="docker", seed=7)
    describe(config) / render_text(config)        # JSON-able dict / human table for `compat config`

``docs/configuration.md`` is the schema. Nothing here imports pytest, docker or requests; PyYAML is
imported only when a config names a compose file.
"""

from compat.config.loader import apply_overrides, find_config, load_config, parse_candidate_option
from compat.config.model import Config
from compat.config.render import describe, render_text

__all__ = [
    "Config",
    "apply_overrides",
    "describe",
    "find_config",
    "load_config",
    "parse_candidate_option",
    "render_text",
]
