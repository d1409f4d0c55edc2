"""Compile the learned router's scoring kernel (routing/learned/kernel.pyx) in place.

`make install` runs it (Cython and setuptools are in requirements.txt), so every install,
production's included, scores with the compiled kernel. Without it the router still works,
with numpy at about three times the cost, and says so (Django's system check, the engine
benchmark). Intermediate files go to a temporary folder; only the module lands in the tree.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "routing/learned/kernel.pyx"


def main() -> None:
    from Cython.Build import cythonize
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    os.chdir(ROOT)  # in place: the module lands beside its source
    with tempfile.TemporaryDirectory() as scratch:
        modules = cythonize(
            [str(ROOT / SOURCE)],
            build_dir=scratch,
            quiet=True,
            compiler_directives={"language_level": 3},
        )
        for module in modules:
            module.name = "routing.learned.kernel"
        command = build_ext(Distribution({"ext_modules": modules}))
        command.inplace = True
        command.build_temp = command.build_lib = scratch
        command.ensure_finalized()
        command.run()
    print(f"built {SOURCE}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
