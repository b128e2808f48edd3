"""
The netlmm distribution: the metadata is in pyproject.toml; this file is for
the tools and habits that expect one (`python setup.py --version`), and
holds the license, which pyproject.toml cannot spell in a way that every
setuptools from 61 on takes without a warning.
"""

from setuptools import setup

setup(license="MIT")
