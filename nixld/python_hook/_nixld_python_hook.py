"""nixld's Python hook: extension modules from pip's wheels under a Nix Python, nothing leaked.

`nixld python-hook install` copies this module and _nixld_python_hook_rescue, as they are,
into a Python environment's site-packages, with a .pth file that calls activate() at start-up.
They need nothing but the standard library of the Python they run in (3.8 and newer): nixld
need not be installed there.

Nothing happens while everything loads. When the loader cannot load an extension module (or a
library ctypes loads) because it did not find a shared library, the hook looks for that
library in nix-ld's library directories, loads it by its full path after what it needs in
turn, and tries again: glibc then satisfies the need by soname from the object already loaded
(see _nixld_python_hook_rescue). The environment is never changed: what Python starts sees
exactly the environment Python was given.

This module is read at every start of Python, so it holds only what start-up needs and touches
only what the interpreter has loaded already; _nixld_python_hook_rescue (the search, the ELF
reading, ctypes' side) is imported on the first failure, or when ctypes is imported. (In one
module, the rescue's bytecode, read at every start, cost 5% of `python -c pass` here.)
"""

import sys

_originals = {}


def activate():
    """Hook into the loading of extension modules, and into ctypes once it is imported; the
    .pth file calls it at start-up. Never raises: a hook that cannot hook does nothing."""
    try:
        if "create_module" in _originals or not sys.platform.startswith("linux"):
            return
        loader = sys.modules["_frozen_importlib_external"].ExtensionFileLoader
        _originals["create_module"] = loader.create_module
        loader.create_module = _create_module
        for name in _CtypesWatcher.WATCHED:
            if name in sys.modules:
                _patch_ctypes(sys.modules[name])
        sys.meta_path.insert(0, _CtypesWatcher)
    except Exception:
        pass


def _create_module(self, spec):
    """ExtensionFileLoader.create_module, with the libraries the loader does not find provided."""
    rescue = None
    while True:
        try:
            module = _originals["create_module"](self, spec)
        except ImportError as error:
            failure = error
        else:
            if rescue is not None:
                rescue.keep()
            return module
        if rescue is None:
            rescue = _rescue_for(failure, spec.name)
        if rescue is None or rescue.provide(str(failure)) is None:
            break
    if rescue is not None:
        rescue.give_up(failure)
    raise failure


# Python drops the frames of importlib's own files from the traceback of a failed import;
# under importlib's name this one is dropped too, and the loader's ImportError shows exactly as
# it would without the hook.
_create_module.__code__ = _create_module.__code__.replace(co_filename="<frozen importlib._bootstrap_external>")


def _rescue_for(error, what):
    try:
        import _nixld_python_hook_rescue as rescue
    except Exception:  # a hook that cannot be loaded must not hide the loader's error
        return None
    return rescue.rescue_for(error, what)


def _patch_ctypes(module):
    try:
        import _nixld_python_hook_rescue as rescue

        rescue.patch_ctypes(module)
    except Exception:  # ctypes without the hook, as without nixld
        pass


class _CtypesWatcher:
    """A meta path finder that finds nothing itself: ctypes and ctypes.util are found and
    loaded as always, and the hook's functions put in them once they have run."""

    WATCHED = ("ctypes", "ctypes.util")

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in cls.WATCHED:
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is not cls and find is not None:
                spec = find(name, path, target)
                if spec is not None:
                    break
        loader = getattr(spec, "loader", None)
        # Only a loader of this module alone may be given an exec_module of its own.
        if loader is None or isinstance(loader, type) or "exec_module" in getattr(loader, "__dict__", ("",)):
            return spec
        execute = loader.exec_module

        def exec_module(module):
            try:
                execute(module)
            finally:
                del loader.exec_module
            _patch_ctypes(module)

        loader.exec_module = exec_module
        return spec
