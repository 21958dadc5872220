"""hndesc_ros: learned residual descriptors, stereo VO with a GTSAM back end, ROS 2 nodes.

The library (everything but :mod:`hndesc_ros.ros`) never imports rclpy or ROS messages.
"""
__version__ = '0.1.0'
