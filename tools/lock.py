"""Rewrites requirements.lock from the current environment and environment.yml from the lock.

Run after changing dependencies in pyproject.toml and installing them: ``make lock``.
CUDA runtime wheels (nvidia-*, cuda-*, triton) are left out: torch pins them exactly per
platform, so leaving them to torch keeps the lock installable on machines without them.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLATFORM_SPECIFIC = re.compile(r"^(nvidia-|cuda-|triton==)", re.I)
HEADER = """\
# Exact versions tested with dfcore (Python 3.11, Linux x86-64). Regenerate with `make lock`.
# environment.yml repeats these pins; tests/test_environment.py checks they agree.
"""


def main() -> None:
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    import setuptools  # pip freeze omits it, but the editable install of dfcore needs it

    pins = sorted(
        [line for line in frozen if "==" in line and not PLATFORM_SPECIFIC.match(line) and not line.startswith("dfcore")]
        + [f"setuptools=={setuptools.__version__}"],
        key=str.lower,
    )
    (ROOT / "requirements.lock").write_text(HEADER + "\n".join(pins) + "\n")
    env = ["name: dfcore", "channels:", "  - conda-forge", "dependencies:", "  - python=3.11", "  - pip", "  - pip:"]
    env += [f"      - {pin}" for pin in pins] + ["      - -e ."]
    (ROOT / "environment.yml").write_text("# Generated from requirements.lock by `make lock`; do not edit by hand.\n"
                                          + "\n".join(env) + "\n")
    print(f"{len(pins)} pins written to requirements.lock and environment.yml")


if __name__ == "__main__":
    main()
