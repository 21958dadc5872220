"""ament_python package setup (colcon build) that also installs with pip."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'hndesc_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    package_data={PACKAGE: ['weights/*.pt', 'weights/*.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='hndesc_ros maintainers',
    maintainer_email='maintainers@hndesc-ros.invalid',
    description='Learned residual descriptors, GTSAM stereo VO and ROS 2 nodes',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'hndesc-vo = hndesc_ros.cli:main',
            'frontend_node = hndesc_ros.ros.frontend_node:main',
            'backend_node = hndesc_ros.ros.backend_node:main',
        ],
    },
)
