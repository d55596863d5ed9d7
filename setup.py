"""Build hooks: the cffi C core, and the demo's foreign binary."""

import os

from setuptools import setup
from setuptools.command.build_ext import build_ext

# An interpreter that exists on no machine: the kernel refuses the demo binary exactly as
# NixOS refuses a binary built for another distribution.
DEMO_INTERPRETER = "/nix/store/00000000000000000000000000000000-glibc-2.40/lib/ld-linux.so"


class BuildExtWithDemo(build_ext):
    """Builds the extensions, then `nixld/_demo/` beside them: a foreign program and the library it needs."""

    def run(self):
        super().run()
        package_dir = os.path.dirname(self.get_ext_fullpath("nixld._exec"))
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
