"""The layer boundaries: the library imports without ROS, and the VO core stays independent.

Everything under hndesc_ros/ but hndesc_ros/ros/ must import with rclpy and the ROS message
packages unimportable (the library runs on machines without ROS), and hndesc_ros/vo/ must not
import the outer layers (evaluation, datasets, ROS, CLI, runner). Both checks walk the package,
so new modules are covered without listing them here.
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / 'hndesc_ros'
ROS_PACKAGES = ('rclpy', 'rcl_interfaces', 'builtin_interfaces', 'sensor_msgs', 'nav_msgs',
                'geometry_msgs', 'std_msgs', 'tf2_ros', 'cv_bridge', 'message_filters')
OUTER_LAYERS = ('hndesc_ros.eval', 'hndesc_ros.datasets', 'hndesc_ros.ros', 'hndesc_ros.cli',
                'hndesc_ros.runner')

IMPORT_ALL_WITHOUT_ROS = '''
import importlib
import pkgutil
import sys
from pathlib import Path

BLOCKED = set(sys.argv[1].split(','))


class NoRos:
    """A meta path finder that makes the ROS packages unimportable."""

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(f'{name} is blocked: the library must import without ROS')
        return None


sys.meta_path.insert(0, NoRos())
for name in BLOCKED:
    sys.modules.pop(name, None)


def modules(path, prefix):
    """Every module below ``path`` except the ROS layer (not imported to find it)."""
    for info in pkgutil.iter_modules([str(path)], prefix):
        if info.name == 'hndesc_ros.ros':
            continue
        yield info.name
        if info.ispkg:
            yield from modules(Path(path) / info.name.rsplit('.', 1)[1], info.name + '.')


import hndesc_ros  # noqa: E402

names = ['hndesc_ros'] + list(modules(hndesc_ros.__path__[0], 'hndesc_ros.'))
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every module, not just the first
        failed.append(f'{name}: {type(exc).__name__}: {exc}')
try:
    from hndesc_ros.cli import build_parser
    build_parser()  # also loads hndesc_ros.ros.commands, which must keep rclpy lazy
except Exception as exc:
    failed.append(f'hndesc_ros.cli.build_parser: {type(exc).__name__}: {exc}')
leaked = sorted(n for n in sys.modules if n.split('.')[0] in BLOCKED)
print('imported', len(names), 'modules')
print('\\n'.join(failed + [f'ROS module loaded: {n}' for n in leaked]))
sys.exit(1 if failed or leaked else 0)
'''


def test_library_imports_without_ros():
    r = subprocess.run([sys.executable, '-c', IMPORT_ALL_WITHOUT_ROS, ','.join(ROS_PACKAGES)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'imported' in r.stdout


def imported_modules(source: str, package: str):
    """Yield (line, absolute module name) for each import in ``source``, a module of
    ``package`` (relative imports resolved; ``from pkg import name`` yields ``pkg.name`` too,
    which may be a module)."""
    parts = package.split('.')
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = parts[:len(parts) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f'{module}.{alias.name}'


def package_of(path: Path) -> str:
    """Dotted package a source file belongs to (its own name for an ``__init__.py``)."""
    return '.'.join(path.relative_to(ROOT).parent.parts)


def test_vo_core_does_not_import_outer_layers():
    files = sorted((PKG / 'vo').rglob('*.py'))
    assert files, 'hndesc_ros/vo has no Python files'
    bad = [f'{path.relative_to(ROOT)}:{line} imports {module}'
           for path in files
           for line, module in imported_modules(path.read_text(), package_of(path))
           if any(module == layer or module.startswith(layer + '.') for layer in OUTER_LAYERS)]
    assert not bad, '\n'.join(bad)


def test_import_scan_resolves_every_import_form():
    """The scanner itself: each import form that could reach an outer layer is seen."""
    src = ('import hndesc_ros.eval.trajectory\n'
           'from hndesc_ros import datasets\n'
           'from ..ros import conversions\n'
           'from .. import cli\n'
           'from . import geometry\n'
           'def f():\n'
           '    from hndesc_ros.runner import run_sequence\n')
    found = {m for _, m in imported_modules(src, 'hndesc_ros.vo')}
    assert {'hndesc_ros.eval.trajectory', 'hndesc_ros.datasets', 'hndesc_ros.ros.conversions',
            'hndesc_ros.cli', 'hndesc_ros.vo.geometry', 'hndesc_ros.runner'} <= found
    assert package_of(PKG / 'vo' / 'odometry.py') == 'hndesc_ros.vo'
    assert package_of(PKG / 'vo' / '__init__.py') == 'hndesc_ros.vo'
