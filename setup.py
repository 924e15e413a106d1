"""Build hook: ship the repository's demo hall inside the package.

``pyhall-mcp`` with no arguments serves the demo hall. In a checkout (and an
editable install) that is the repository root; a built wheel carries a copy in
``pyhall_mcp/demo_hall`` so that a plain ``pip install`` works too.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DEMO_HALL = ("hall.yaml", "rules", "policies", "workers", "workspace", "keys")


class BuildWithDemoHall(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "pyhall_mcp" / "demo_hall"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pyhall")
        for name in DEMO_HALL:
            source = root / name
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True, ignore=ignore)
            elif source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)


setup(cmdclass={"build_py": BuildWithDemoHall})
