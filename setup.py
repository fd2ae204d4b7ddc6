"""Maps the repository's top-level folders onto the one `forgeway` import namespace."""

from setuptools import find_packages, setup

ROOTS = {
    "forgeway": "forgeway",
    "forgeway.gateway": "gateway",
    "forgeway.services": "services",
    "forgeway.client": "clients/python/forgeway_client",
}

packages = []
for name, folder in ROOTS.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
