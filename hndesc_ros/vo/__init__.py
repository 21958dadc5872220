"""hndesc_ros.vo."""
