"""The host package `edge-sdk` leaves out every file the runtime package `edge-sdk-runtime` installs.

Both are built from this one tree: runtime/pyproject.toml lists the on-device files (whole packages, and single
modules of packages the two share, which bring their package's __init__.py). Without this filter setuptools
would put those files in both wheels, and pip would let the second install overwrite the first's files.
Everything else is configured in pyproject.toml.
"""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

HERE = Path(__file__).resolve().parent


def runtime_owned_modules():
    """{(package, module)} of every .py file the runtime wheel installs (``module`` '__init__' included)."""
    config = tomllib.loads((HERE / "runtime" / "pyproject.toml").read_text())["tool"]["setuptools"]
    owned = set()
    for dotted in config.get("py-modules", []):
        package, _, module = dotted.rpartition(".")
        owned.update({(package, module), (package, "__init__")})
    return owned, set(config.get("packages", []))


class HostBuildPy(build_py):
    """build_py without the runtime's modules."""

    def find_package_modules(self, package, package_dir):
        owned, owned_packages = runtime_owned_modules()
        if package in owned_packages:
            return []
        return [m for m in super().find_package_modules(package, package_dir) if (m[0], m[1]) not in owned]


setup(cmdclass={"build_py": HostBuildPy})
