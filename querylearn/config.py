"""Old import path of :mod:`querylearn.config_loader`, kept so existing imports keep working.

The config *loader* is ``querylearn/config_loader.py``; each stage's config class lives next to its
stage (``continual/config.py`` holds the train-sequence schema). See docs/config.md.
"""

from querylearn.config_loader import (  # noqa: F401
    dump_toml,
    load_config,
    parse_dotted_args,
    parse_sets,
    parse_value,
    require,
    stage_config,
    to_dict,
    write_config,
)
