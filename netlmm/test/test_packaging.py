"""
The distribution as a user installs it, in a throwaway virtualenv: `pip
install .` and `pip install -e .` both give twistd the three role plugins,
`python setup.py --version` answers, and installing prints no setuptools
warnings.
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from netlmm.test.test_daemons import examples

TWISTD = "from twisted.scripts.twistd import run; run()"


def sourceTree():
    """The repository's root (where pyproject.toml is)."""
    root = examples().parent.parent
    if not (root / "pyproject.toml").exists():
        raise SkipTest(f"no pyproject.toml in {root}: run from the source tree")
    return root


class InstallTests(SynchronousTestCase):

    def setUp(self):
        self.work = Path(self.mktemp()).absolute()
        self.work.mkdir()
        # A copy: building writes egg-info and build/ into the tree.
        self.src = self.work / "src"
        shutil.copytree(sourceTree(), self.src, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "_trial_temp*", "__pycache__", "*.egg-info", "build",
            "dist", ".hypothesis", "pki", "*.sock", "*.log", "*.pid"))
        self.venv = self.work / "venv"
        venv.create(self.venv, with_pip=True)
        self.python = str(self.venv / "bin" / "python")

    def run_(self, *argv, cwd=None, check=True):
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NETLMM_SOURCE")}
        p = subprocess.run(list(argv), cwd=cwd or self.work, capture_output=True,
                           text=True, timeout=600, env=env)
        if check and p.returncode != 0:
            self.fail(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p

    def pip(self, *argv):
        p = self.run_(self.python, "-m", "pip", "install", "-q", *argv, check=False)
        if p.returncode != 0 and ("Could not find a version" in p.stderr
                                  or "No matching distribution" in p.stderr):
            raise SkipTest(f"the package index is not reachable: {p.stderr.strip()[-300:]}")
        if p.returncode != 0:
            self.fail(f"pip install {' '.join(argv)} failed:\n{p.stdout}{p.stderr}")
        return p

    def assertPlugins(self, how):
        """twistd in the venv knows the three roles, from outside the source tree."""
        for role in ("lma", "pmip", "mag"):
            p = self.run_(self.python, "-c", TWISTD, f"netlmm-{role}", "--help")
            self.assertIn(f"netlmm-{role} --config {role}.toml", p.stdout, how)

    def test_installAndEditable(self):
        p = self.pip(str(self.src))
        warnings = [line for line in p.stderr.splitlines()
                    if "Location" not in line and line.strip()]
        # setuptools' project.license deprecation printed 42 lines here (issue 11).
        self.assertEqual(warnings, [], "pip install printed:\n" + p.stderr)
        self.assertPlugins("pip install .")
        version = self.run_(self.python, "setup.py", "--version", cwd=self.src)
        self.assertEqual(version.stdout.strip().splitlines()[-1], "0.1.0")
        self.run_(self.python, "-m", "pip", "uninstall", "-y", "-q", "netlmm")
        self.pip("-e", str(self.src))
        self.assertPlugins("pip install -e .")
        # The editable install runs the source tree's code.
        where = self.run_(self.python, "-c", "import netlmm; print(netlmm.__file__)")
        self.assertEqual(where.stdout.strip(), str(self.src / "netlmm" / "__init__.py"))
