"""hndesc_ros.ros."""
