"""Build script: decides only about the optional Cython extension ``native._hotpath``.

Everything else (metadata, dependencies) lives in pyproject.toml.  The extension is an
optimisation: when Cython or a C compiler is missing, or IDNODE_NO_EXTENSIONS=1 is set, the
package installs with the pure-Python twin ``native._hotpath_py`` and says so.
"""

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NO_EXTENSIONS = os.environ.get("IDNODE_NO_EXTENSIONS", "") not in ("", "0")
IS_CPYTHON = platform.python_implementation() == "CPython"


def _banner(text: str) -> None:
    line = "*" * 72
    print(f"\n{line}\n* idnode: {text}\n{line}\n", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Cythonize when needed; fall back to the pure twin if compiling fails."""

    def finalize_options(self):
        if self.distribution.ext_modules:
            try:
                from Cython.Build import cythonize
            except ImportError:
                _banner("Cython not available: installing the pure-Python hot path")
                self.distribution.ext_modules = []
            else:
                self.distribution.ext_modules = cythonize(
                    self.distribution.ext_modules,
                    compiler_directives={
                        "language_level": 3,
                        "boundscheck": False,
                        "wraparound": False,
                        "cdivision": True,
                    },
                    quiet=True,
                )
        super().finalize_options()

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing or broken
            _banner(f"building the extension failed ({exc}): pure-Python hot path only")
            return
        if self.extensions:
            _banner("built the Cython hot path (native._hotpath)")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            _banner(f"compiling {ext.name} failed ({exc}): pure-Python hot path only")


ext_modules = []
if NO_EXTENSIONS or not IS_CPYTHON:
    _banner("IDNODE_NO_EXTENSIONS set or not CPython: pure-Python hot path only")
else:
    ext_modules.append(
        Extension("native._hotpath", ["native/_hotpath.pyx"], extra_compile_args=["-O2"])
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
