"""hndesc_ros.eval."""
