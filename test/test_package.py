"""Packaging: package.xml, setup.py, launch file structure, and a real colcon build."""
import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_package_xml_format3_and_deps():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'hndesc_ros' and root.findtext('license') == 'Apache-2.0'
    deps = {e.text for e in root.findall('exec_depend')}
    for dep in ('rclpy', 'sensor_msgs', 'nav_msgs', 'geometry_msgs', 'std_msgs', 'cv_bridge',
                'python3-numpy', 'python3-opencv', 'launch_ros'):
        assert dep in deps
    assert root.find('export/build_type').text == 'ament_python'


def _launch_tree():
    return ast.parse((ROOT / 'launch' / 'vo.launch.py').read_text())


def test_launch_file_nodes_exist_as_entry_points():
    tree = _launch_tree()
    assert any(isinstance(n, ast.FunctionDef) and n.name == 'generate_launch_description'
               for n in tree.body)
    executables = {kw.value.value for n in ast.walk(tree) if isinstance(n, ast.Call)
                   for kw in n.keywords if kw.arg == 'executable'}
    assert executables == {'frontend_node', 'backend_node'}
    setup = (ROOT / 'setup.py').read_text()
    for exe in executables:
        assert f"'{exe} = hndesc_ros.ros.{exe}:main'" in setup
    args = {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', '') == 'DeclareLaunchArgument'}
    assert {'params_file', 'left_image', 'right_image', 'bag', 'use_sim_time', 'exact',
            'fastdds_profile'} <= args
    launch_text = (ROOT / 'launch' / 'vo.launch.py').read_text()
    assert "os.path.join(share, 'config', 'vo.yaml')" in launch_text


def test_params_file_keys_exist_in_schema():
    from hndesc_ros.config import load_config
    data = yaml.safe_load((ROOT / 'config' / 'vo.yaml').read_text())
    assert set(data) == {'frontend_node', 'backend_node'}
    load_config(ROOT / 'config' / 'vo.yaml')  # raises on any unknown key or bad value


def test_colcon_build(tmp_path):
    colcon = shutil.which('colcon') or str(Path(sys.executable).parent / 'colcon')
    src = tmp_path / 'src' / 'hndesc_ros'
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'build', 'install', 'log', 'outputs', 'runs', '.trainingdata',
        '__pycache__', '*.egg-info', '.pytest_cache'))
    env = dict(os.environ, COLCON_HOME=str(tmp_path / 'colcon_home'))
    r = subprocess.run([colcon, 'build', '--base-paths', str(tmp_path / 'src'),
                        '--build-base', str(tmp_path / 'build'), '--install-base',
                        str(tmp_path / 'install'), '--event-handlers', 'console_direct-'],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    share = tmp_path / 'install' / 'hndesc_ros' / 'share' / 'hndesc_ros'
    assert (share / 'package.xml').exists()
    assert (share / 'launch' / 'vo.launch.py').exists()
    assert (share / 'config' / 'vo.yaml').exists()
    assert (share / 'config' / 'fastdds_large_data.xml').exists()
    site = list((tmp_path / 'install' / 'hndesc_ros' / 'lib').glob('python3*/site-packages'))
    assert site and list(site[0].glob('hndesc_ros/weights/hndesc_residual-small.onnx')), \
        'the shipped ONNX models are installed'
    assert (tmp_path / 'install' / 'hndesc_ros' / 'share' / 'ament_index' / 'resource_index' /
            'packages' / 'hndesc_ros').exists()
    libexec = tmp_path / 'install' / 'hndesc_ros' / 'lib' / 'hndesc_ros'
    assert (libexec / 'frontend_node').exists() and (libexec / 'backend_node').exists()


def test_fastdds_profile_gives_a_16mb_shared_memory_segment_and_the_launch_file_sets_it():
    root = ET.parse(ROOT / 'config' / 'fastdds_large_data.xml').getroot()
    ns = {'d': 'http://www.eprosima.com'}
    shm = [t for t in root.iterfind('.//d:transport_descriptor', ns)
           if t.find('d:type', ns).text == 'SHM']
    assert shm and int(shm[0].find('d:segment_size', ns).text) == 16 * 1024 * 1024
    participant = root.find('.//d:participant', ns)
    assert participant.get('is_default_profile') == 'true'
    assert participant.find('.//d:useBuiltinTransports', ns).text == 'false'
    calls = [n.func.id for n in ast.walk(_launch_tree())
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    assert 'SetEnvironmentVariable' in calls
