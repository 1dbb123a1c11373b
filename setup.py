"""Build hooks for the Python package (metadata: pyproject.toml): libtmac goes inside the
package, so the wheel carries its library. By default it is built here with
`cargo build --release --lib`; TMAC_LIB_FILE names a library built already (a cross build for
the Raspberry Pi, say) and TMAC_PLAT_NAME the wheel's platform tag for it (linux_aarch64)."""
import os
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70
    from wheel.bdist_wheel import bdist_wheel

ROOT = os.path.dirname(os.path.abspath(__file__))


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        lib = os.environ.get("TMAC_LIB_FILE")
        if not lib:
            subprocess.check_call(["cargo", "build", "--release", "--lib"], cwd=ROOT)
            lib = os.path.join(ROOT, "target", "release", "libtmac.so")
        shutil.copy(lib, os.path.join(self.build_lib, "tmac", "libtmac.so"))


class NativeDistribution(Distribution):
    """The package holds a native library: install it as platform-specific (platlib)."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """Not pure Python (it carries a native library), but no CPython ABI either (ctypes)."""

    def finalize_options(self):
        if os.environ.get("TMAC_PLAT_NAME"):
            self.plat_name = os.environ["TMAC_PLAT_NAME"]
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(distclass=NativeDistribution,
      cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": PlatformWheel})
