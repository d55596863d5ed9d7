"""Build hooks: the cffi C core, the shim and the demo's foreign binary."""

import importlib.util
import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

# An interpreter that exists on no machine: the kernel refuses the demo binary exactly as
# NixOS refuses a binary built for another distribution.
DEMO_INTERPRETER = "/nix/store/00000000000000000000000000000000-glibc-2.40/lib/ld-linux.so"


def _shim_build():
    """nixld/_shim_build.py, loaded by its path: importing the package needs its C core."""
    spec = importlib.util.spec_from_file_location("_shim_build", os.path.join("nixld", "_shim_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildExtWithDemo(build_ext):
    """Builds the extensions, then beside them `nixld/shim/` (the shim for each system this
    machine runs) and `nixld/_demo/` (a foreign program and the library it needs)."""

    def run(self):
        super().run()
        package_dir = os.path.dirname(self.get_ext_fullpath("nixld._exec"))
        self.build_shims(package_dir)
        self.build_demo(package_dir)

    def build_shims(self, package_dir):
        shim_build = _shim_build()
        compiler = self.compiler.compiler_so[:1]
        failures = shim_build.build_shims(compiler, os.path.join(package_dir, "shim"))
        systems = shim_build.shim_systems()
        for required in systems[:1] + ["launcher"]:
            if required in failures:
                what = "the launcher" if required == "launcher" else f"the shim for {required}"
                raise RuntimeError(f"nixld: {what} could not be built: {failures[required]}")
        for system, complaint in failures.items():
            # nixld works without a second system's shim; `nixld shim --path` says it is missing.
            self.warn(f"nixld: the shim for {system} was not built: {complaint}")

    def build_demo(self, package_dir):
        lib_dir = os.path.join(package_dir, "_demo", "lib")
        bin_dir = os.path.join(package_dir, "_demo", "bin")
        library = self.compiler.compile(
            ["demo/greeting.c"], output_dir=self.build_temp, extra_postargs=["-fPIC"]
        )
        self.compiler.link_shared_object(library, os.path.join(lib_dir, "libnixld-demo.so"))
        program = self.compiler.compile(["demo/hello.c"], output_dir=self.build_temp)
        self.compiler.link_executable(
            program,
            "hello-foreign",
            output_dir=bin_dir,
            libraries=["nixld-demo"],
            library_dirs=[lib_dir],
            extra_postargs=[f"-Wl,--dynamic-linker={DEMO_INTERPRETER}"],
        )


setup(
    cffi_modules=["nixld/_exec_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithDemo},
)
