"""Build the Cython kernel; all metadata lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "fibod._fastfib",
        ["fibod/_fastfib.pyx"],
        include_dirs=["fibod"],
        # Portable C only: no -march flags. The AVX2 clone is compiled with a
        # function-level target attribute and chosen at run time.
        extra_compile_args=["-O3"],
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
