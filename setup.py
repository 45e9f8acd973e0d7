"""What pyproject.toml cannot say: the top-level ``web/``, ``pipelines/lib/`` and ``plugins/`` ship
inside the package as ``runner/_bundled/...`` (found by ``runner/bundled.py``), so a wheel or a
plain ``pip install .`` serves the page and renders ``pipelines/lib`` macros without a source tree.
Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

BUNDLED = {
    "runner._bundled.web": "web",
    "runner._bundled.pipelines": "pipelines",
    "runner._bundled.plugins": "plugins",
}

setup(
    packages=find_packages(include=["runner", "runner.*"]) + list(BUNDLED),
    package_dir=BUNDLED,
    package_data={
        "runner": ["store/migrations/*.sql", "images/*.sh"],
        "runner._bundled.web": ["templates/*", "static/*"],
        "runner._bundled.pipelines": ["lib/*.j2"],
        "runner._bundled.plugins": ["*.py"],
    },
    exclude_package_data={"": ["__pycache__/*", "*.pyc"]},
)
