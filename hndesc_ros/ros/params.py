"""ROS parameters from the one config schema: declared with descriptions and defaults,
read back into a validated Config (an invalid value stops the node naming the parameter)."""
from __future__ import annotations

from typing import Sequence

from rcl_interfaces.msg import ParameterDescriptor

from hndesc_ros.config import Config, field_comment, from_dict, iter_params


def declare_config(node, sections: Sequence[str]) -> Config:
    """Declare ``section.key`` parameters for ``sections``; return the validated Config."""
    values = {}
    for key, default in iter_params(Config()):
        if key.split('.')[0] not in sections:
            continue
        value = list(default) if isinstance(default, tuple) else default
        desc = ParameterDescriptor(description=field_comment(key), dynamic_typing=True)
        node.declare_parameter(key, value, desc)
        values[key] = node.get_parameter(key).value
    return from_dict(values)  # raises ConfigError naming the key
