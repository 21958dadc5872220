"""``hndesc-vo`` subcommands of the ROS layer; rclpy and messages are imported only when run."""


def add_commands(sub) -> None:
    """Register the ROS subcommands (kitti2bag, play, run, record-odom) on ``sub``."""
