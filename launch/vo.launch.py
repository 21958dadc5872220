"""Launch the hndesc_ros stereo VO graph: front end + back end, optional bag playback.

    ros2 launch hndesc_ros vo.launch.py
    ros2 launch hndesc_ros vo.launch.py bag:=/data/kitti06 use_sim_time:=true exact:=true
    ros2 launch hndesc_ros vo.launch.py fastdds_profile:=/path/to/profile.xml
    ros2 launch hndesc_ros vo.launch.py params_file:=/path/to/vo.yaml \
        left_image:=/camera/left/image_rect right_image:=/camera/right/image_rect \
        bag:=/data/kitti06 \
        left_info:=/camera/left/camera_info right_info:=/camera/right/camera_info
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from hndesc_ros.config import EXACT_REPLAY


def generate_launch_description():
    share = get_package_share_directory('hndesc_ros')
    args = [
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'vo.yaml'),
                              description='ROS parameters of both nodes'),
        DeclareLaunchArgument('left_image', default_value='left/image_rect',
                              description='rectified left image topic'),
        DeclareLaunchArgument('right_image', default_value='right/image_rect',
                              description='rectified right image topic'),
        DeclareLaunchArgument('left_info', default_value='left/camera_info',
                              description='left CameraInfo topic'),
        DeclareLaunchArgument('right_info', default_value='right/camera_info',
                              description='right CameraInfo topic'),
        DeclareLaunchArgument('odom_topic', default_value='odom', description='odometry output'),
        DeclareLaunchArgument('bag', default_value='',
                              description='optional ROS 2 bag to play with --clock'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (true when playing a bag)'),
        DeclareLaunchArgument('exact', default_value='false',
                              description='repeatable bag replay: reliable inputs, every pair '
                              'in order, no landmark feedback (as hndesc-vo run --exact)'),
        # large images between processes: a 16 MB shared-memory segment (see the XML); a
        # profile the user exported already wins
        DeclareLaunchArgument('fastdds_profile', default_value=EnvironmentVariable(
            'FASTDDS_DEFAULT_PROFILES_FILE',
            default_value=os.path.join(share, 'config', 'fastdds_large_data.xml')),
            description='Fast DDS XML profile of every process started here'),
    ]
    profile = SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                                     LaunchConfiguration('fastdds_profile'))
    params = LaunchConfiguration('params_file')
    sim = {'use_sim_time': LaunchConfiguration('use_sim_time')}
    info_remaps = [('left/camera_info', LaunchConfiguration('left_info')),
                   ('right/camera_info', LaunchConfiguration('right_info'))]
    # live input (default) or exact replay: the same nodes, the replay with three overrides
    exact = LaunchConfiguration('exact')
    nodes = []
    for overrides, condition in (({}, UnlessCondition(exact)),
                                 (EXACT_REPLAY, IfCondition(exact))):
        nodes.append(Node(
            package='hndesc_ros', executable='frontend_node', name='frontend_node',
            output='screen', parameters=[params, sim, overrides], condition=condition,
            remappings=[('left/image_rect', LaunchConfiguration('left_image')),
                        ('right/image_rect', LaunchConfiguration('right_image'))] + info_remaps))
        nodes.append(Node(
            package='hndesc_ros', executable='backend_node', name='backend_node',
            output='screen', parameters=[params, sim, overrides], condition=condition,
            remappings=info_remaps + [('odom', LaunchConfiguration('odom_topic'))]))
    player = ExecuteProcess(
        cmd=['ros2', 'bag', 'play', LaunchConfiguration('bag'), '--clock'],
        output='screen',
        condition=IfCondition(PythonExpression(["'", LaunchConfiguration('bag'), "' != ''"])))
    return LaunchDescription(args + [profile] + nodes + [player])
