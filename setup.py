"""The top-level folders shared/, controllers/ and cli/ install under the one namespace `tide`."""

from setuptools import find_packages, setup

TOP_LEVEL = ("shared", "controllers", "cli")

packages = []
for top in TOP_LEVEL:
    packages += [f"tide.{top}"] + [f"tide.{top}.{sub}" for sub in find_packages(top)]

setup(
    packages=packages,
    package_dir={f"tide.{top}": top for top in TOP_LEVEL},
    package_data={"tide.shared": ["py.typed"]},
)
