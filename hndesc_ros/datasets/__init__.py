"""hndesc_ros.datasets."""
