"""ament_python package setup (colcon build) that also installs with pip.

Dependencies come from the requirements files, one source for pip and the Makefile:
``pip install .`` is the runtime (ONNX Runtime, no torch); ``pip install .[train]`` adds torch
and onnx (training, export, torch backend, CUDA front end); ``.[test]`` the test tools. ROS 2
packages are declared in package.xml (rosdep) and listed in requirements.txt for PyPI wheels.
"""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'hndesc_ros'
HERE = Path(__file__).resolve().parent


def requirements(name: str, ros: bool = False) -> list:
    """Requirement lines of ``name`` (no comments, no ``-r`` includes); ROS wheels only when
    ``ros`` (a colcon workspace provides them from the ROS installation)."""
    path = HERE / name
    if not path.is_file():  # e.g. an sdist without them
        return []
    lines = [line.split('#')[0].strip() for line in path.read_text().splitlines()]
    return [r for r in lines if r and not r.startswith('-')
            and (ros or not r.startswith('ros-'))]


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    package_data={PACKAGE: ['weights/*.pt', 'weights/*.onnx', 'weights/*.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.xml')),
    ],
    install_requires=['setuptools', *requirements('requirements.txt')],
    extras_require={
        'ros': [r for r in requirements('requirements.txt', ros=True) if r.startswith('ros-')],
        'train': requirements('requirements-train.txt'),
        'test': requirements('requirements-dev.txt'),
    },
    python_requires='>=3.10',
    zip_safe=False,
    maintainer='hndesc_ros maintainers',
    maintainer_email='maintainers@hndesc-ros.invalid',
    description='Learned residual descriptors, GTSAM stereo VO and ROS 2 nodes',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'hndesc-vo = hndesc_ros.cli:main',
            'frontend_node = hndesc_ros.ros.frontend_node:main',
            'backend_node = hndesc_ros.ros.backend_node:main',
        ],
    },
)
