"""Compile the learned router's scoring kernel (routing/learned/kernel.pyx) and the complexity
estimate's window counts (routing/complexity_scan.pyx) in place.

`make install` runs it (Cython and setuptools are in requirements.txt), so every install,
production's included, scores with the compiled kernel. Without it the router still works,
with numpy at about three times the cost, and says so (Django's system check, the engine
benchmark); without the complexity counts the estimate counts in Python, nearly twice the cost
for a 1,000-token prompt.
Intermediate files go to a temporary folder; only the modules land in the tree.
"""

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {  # module -> source
    "routing.learned.kernel": "routing/learned/kernel.pyx",
    "routing.complexity_scan": "routing/complexity_scan.pyx",
}


def main() -> None:
    from Cython.Build import cythonize
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    os.chdir(ROOT)  # in place: the module lands beside its source
    with tempfile.TemporaryDirectory() as scratch:
        modules = cythonize(
            [str(ROOT / source) for source in SOURCES.values()],
            build_dir=scratch,
            quiet=True,
            compiler_directives={"language_level": 3},
        )
        for module, name in zip(modules, SOURCES, strict=True):
            module.name = name
        command = build_ext(Distribution({"ext_modules": modules}))
        command.inplace = True
        command.build_temp = command.build_lib = scratch
        command.ensure_finalized()
        command.run()
    print(f"built {', '.join(SOURCES.values())}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
